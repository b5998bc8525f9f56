;;; sshdist remote REPL loop: the pump of an exec channel's REPL.
;;;
;;; The REPL of an exec channel: a pump thread streams what fd 1 and fd 2
;;; receive, flushes records, and reads requests while the loop evaluates (so
;;; an interrupt can arrive in-band, and the end of the input is noticed).

(define-module (sshdist pump)
  #:use-module (ice-9 threads)
  #:use-module ((sshdist framing)
                #:select (send-record flush-sink sink-pending? read-request))
  #:use-module ((sshdist capture) #:select (capture-ports drain-captures!))
  #:use-module ((sshdist interrupts) #:select (interrupt-main! count-request! cancel-waiting!))
  #:use-module ((sshdist input) #:select (pump-reply!))
  #:export (loop-request pump end-process-group!))

(define request-lock (make-mutex))   ; held by whoever reads requests
(define queued '())                 ; requests the pump read for the loop, in order
(define evaluating? #f)              ; the loop is working on a request

(define (loop-request in)
  ;; The main loop's reader: a request the pump already took, or the next one.
  ;; (No with-mutex: a failure here ends the loop anyway, and this is the hot path.)
  (lock-mutex request-lock)
  (set! evaluating? #f)
  (let ((request (if (pair? queued)
                     (let ((first (car queued))) (set! queued (cdr queued)) first)
                     (read-request in))))
    (count-request!)
    (set! evaluating? (not (eof-object? request)))
    (unlock-mutex request-lock)
    request))

(define (end-process-group!)
  ;; The client is gone: SIGTERM, then SIGKILL, for every process of the REPL's
  ;; group (what its code started, in the background too), the REPL last, so
  ;; nothing of this REPL outlives its node.  A daemon meant to stay uses setsid.
  (sigaction SIGTERM SIG_IGN)
  (kill 0 SIGTERM)
  (usleep 300000)
  (kill 0 SIGKILL))

(define (abandoned!)
  ;; The client went away while code runs: Ctrl-C first; code that will not stop
  ;; within a second has its process group ended from here.
  (interrupt-main!)
  (let wait ((n 0))
    (when (and evaluating? (< n 50))
      (usleep 20000)
      (wait (1+ n))))
  (when evaluating?
    (end-process-group!)))

(define (pump-requests! in out)
  ;; Called with the request lock held while the loop evaluates; #t when the
  ;; input ended.
  (let ((request (read-request in)))
    ;; A request sent before this one was answered waits its turn; the end of
    ;; the input still reaches the pump (it keeps reading), so nothing outlives it.
    (cond ((eof-object? request) (set! queued (append queued (list request))) #t)
          ((eqv? (car request) #\i)
           (cancel-waiting! (length queued))
           (interrupt-main!)
           (send-record out "i" "")
           #f)
          ((eqv? (car request) #\c)
           (cancel-waiting! (length queued))
           #f)
          ((eqv? (car request) #\s)
           (pump-reply! request)
           #f)
          (else (set! queued (append queued (list request))) #f))))

(define (pump in out)
  (let loop ()
    (catch #t
      (lambda ()
        (let* ((pipes (capture-ports))
               (ended? (and (pair? queued) (eof-object? (car (last-pair queued)))))
               (reads (if (and evaluating? (not ended?)) (cons in pipes) pipes))
               (ready (car (select reads '() '() 0 20000))))
          (when (or (memq (car pipes) ready) (memq (cadr pipes) ready))
            (drain-captures! 16))
          (when (and (memq in ready) evaluating? (try-mutex request-lock))
            (when (dynamic-wind
                    (lambda () #t)
                    ;; Ready again under the lock: the loop may have read
                    ;; what made IN ready while select returned.  (Not
                    ;; char-ready?, which misses the end of a pipe.)
                    (lambda () (and evaluating?
                                    (pair? (car (select (list in) '() '() 0 0)))
                                    (pump-requests! in out)))
                    (lambda () (unlock-mutex request-lock)))
              (abandoned!)))
          (when (sink-pending? out)
            (flush-sink out))))
      (lambda args (usleep 20000)))
    (loop)))
