;;; sshdist remote REPL loop: interrupts, and the clients they are for.
;;;
;;; Each client's loop has a busy variable, true while its code runs; an
;;; interrupt stops only a busy one.  The exec channel's loop (the main one) is
;;; also interrupted by SIGINT, its own or a Ctrl-C, and counts its requests, so
;;; that an interrupt ends the request it was for and no later one.

(define-module (sshdist interrupts)
  #:use-module (ice-9 threads)
  #:export (register-client! forget-client! interrupt-client! interrupt-asked?
            forget-interrupt! main-busy claim-main-loop! leave-if-forked! count-request!
            cancel-waiting! cancelled-request? on-sigint settle-if-interrupted!
            interrupt-main!))

(define clients (make-hash-table))
(define clients-lock (make-mutex))
(define client-count 0)

(define (register-client! busy)
  ;; BUSY is a variable that is true while the client's evaluation runs.
  (with-mutex clients-lock
    (set! client-count (1+ client-count))
    (hashv-set! clients client-count (cons (current-thread) busy))
    client-count))

(define (forget-client! id)
  (with-mutex clients-lock (hashv-remove! clients id)))

(define interrupts-asked (make-weak-key-hash-table))  ; busy variable -> #t

(define (ask-interrupt! busy)
  ;; Remembered until the client's next request: a value its code returns after
  ;; this (a (sleep 100) that SIGINT woke early returns 98) is no value.
  (hashq-set! interrupts-asked busy #t))

(define (interrupt-asked? busy)
  (hashq-ref interrupts-asked busy #f))

(define (forget-interrupt! busy)
  ;; The client's next request begins.
  (hashq-remove! interrupts-asked busy))

(define (interrupt-now busy)
  ;; Only an evaluation is interrupted; an idle loop ignores the request.
  (when (variable-ref busy)
    (scm-error 'signal #f "User interrupt" '() '())))

(define (interrupt-client! id)
  (let ((entry (with-mutex clients-lock (hashv-ref clients id))))
    (when entry
      (when (variable-ref (cdr entry)) (ask-interrupt! (cdr entry)))
      (system-async-mark (lambda () (interrupt-now (cdr entry))) (car entry)))))

(define main-busy (make-variable #f))
(define main-thread #f)

(define loop-pid (getpid))

(define (claim-main-loop!)
  ;; The exec channel's loop runs in this process, on this thread.
  (set! loop-pid (getpid))
  (set! main-thread (current-thread)))

(define (leave-if-forked!)
  ;; Code that forks ((primitive-fork)) and lets the child return into this loop
  ;; would have two processes answer on one channel: the child leaves, silently.
  (unless (= (getpid) loop-pid)
    (primitive-_exit 0)))

(define requests-read 0)                ; the loop's requests so far
(define cancelled-through 0)            ; requests up to this one are not to begin
(define interrupt-wanted #f)            ; the request an in-band interrupt is for
(define own-sigint #f)                  ; the request our last group SIGINT was for
(define interrupted #f)                 ; the request an interrupt was last sent to

(define (count-request!)
  ;; The main loop read one more request (with the pump's request lock held).
  (set! requests-read (1+ requests-read)))

(define (cancel-waiting! waiting)
  ;; The WAITING requests read after the running one are not to begin.
  (set! cancelled-through (+ requests-read waiting)))

(define (on-sigint signum)
  ;; Our own SIGINT can arrive after its request ended: it must not stop the next
  ;; one (a (sleep 2) that returned at once).  A SIGINT we did not send is Ctrl-C.
  (let ((own own-sigint))
    (set! own-sigint #f)
    (when (or (not own) (eqv? own requests-read))
      (set! interrupt-wanted #f)
      (interrupt-now main-busy))))

(define (settle-if-interrupted!)
  ;; At the end of a request an interrupt was sent to: see settle-interrupt!.
  (when (eqv? interrupted requests-read) (settle-interrupt!)))

(define (settle-interrupt!)
  ;; A request that was interrupted ends only once our SIGINT has been handled
  ;; and every wake-up it left for this thread is used up (at most about 0.2 s):
  ;; left over, one would end the next request's (sleep 2) at once.
  (let loop ((n 0))
    (when (and own-sigint (< n 200))
      (usleep 1000)
      (loop (1+ n))))
  (set! own-sigint #f)
  (let loop ((n 0))
    (when (and (< n 5) (positive? (usleep 1000)))  ; woken early: there was one
      (loop (1+ n)))))

(define (interrupt-main!)
  ;; SIGINT for the group, as Ctrl-C, and the same interrupt marked on the loop's
  ;; thread: (system "sleep 1") ignores SIGINT while it waits, so in a loop over
  ;; system only the mark, run when system returns, stops the loop.
  (let ((request requests-read))
    (ask-interrupt! main-busy)
    (set! interrupt-wanted request)
    (set! own-sigint request)
    (set! interrupted request)
    (interrupt-process-group!)
    (system-async-mark
     (lambda ()
       ;; Not if SIGINT did it already, nor once the request has ended.
       (when (and (eqv? interrupt-wanted request) (eqv? requests-read request))
         (set! interrupt-wanted #f)
         (interrupt-now main-busy)))
     main-thread)))

(define (interrupt-process-group!)
  ;; What Ctrl-C in a terminal does: the REPL and every child it runs (a
  ;; (system "sleep 9") waits with SIGINT ignored) get SIGINT.
  (kill 0 SIGINT))

(define (cancelled-request? busy)
  ;; A request that was waiting behind the running one when an in-band interrupt
  ;; came: the interrupt was meant for it too.
  (and (eq? busy main-busy) (<= requests-read cancelled-through)))
