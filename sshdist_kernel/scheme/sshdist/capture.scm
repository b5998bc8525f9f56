;;; sshdist remote REPL loop: what code prints, as o and e records.
;;;
;;; Captured descriptors (exec channel only): fd 1 and fd 2 write into pipes
;;; whose read ends only the pump thread and the end-of-form drain read.  A REPL
;;; server's clients share fd 1 and 2: their code prints on ports that make
;;; records themselves (framed-port).

(define-module (sshdist capture)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 binary-ports)
  #:use-module (ice-9 threads)
  #:use-module ((sshdist framing) #:select (send-record))
  #:export (close-on-exec! capture-standard-fds! capturing? capture-ports drain-captures!
            make-streams usable-streams flush-printed))

(define captures '())                   ; ((read-port tag write-fd fd) ...)
(define capture-lock (make-mutex))
(define capture-sink #f)
(define draining? #f)                   ; set before the pipes are read, cleared after
(define null-fd #f)                     ; a private /dev/null, to put back on fd 0

(define (close-on-exec! fd)
  (fcntl fd F_SETFD FD_CLOEXEC)
  fd)

(define (capture-fd! fd tag)
  ;; FD becomes the write end of a pipe; a private copy of that end is kept to
  ;; open ports on, and to put FD back if code closes it.
  (let* ((p (pipe))
         (r (car p))
         (w (close-on-exec! (dup->fdes (cdr p)))))
    (close-port (cdr p))
    (dup2 w fd)
    (close-on-exec! (fileno r))
    (setvbuf r 'block 65536)
    (set! captures (cons (list r tag w fd) captures))))

(define (capture-standard-fds! sink)
  ;; The exec channel's loop: /dev/null on fd 0, and what fd 1 and fd 2 receive
  ;; turned into o and e records on SINK.
  (let ((null (close-on-exec! (open-fdes "/dev/null" O_RDONLY))))
    (dup2 null 0)
    (set! null-fd null))
  (set! capture-sink sink)
  (capture-fd! 1 "o")
  (capture-fd! 2 "e"))

(define (capturing?)
  ;; Whether fd 1 and fd 2 are captured: only on an exec channel.
  (pair? captures))

(define (capture-ports)
  ;; The read ends of the pipes, for the pump to wait on.
  (map car captures))

(define (drain-captures! limit)
  ;; Turn what waits in the pipes into records, LIMIT reads at most a pipe (a
  ;; child that never stops printing must not hold the loop).
  (call-with-blocked-asyncs
   (lambda ()
     (with-mutex capture-lock
       (set! draining? #t)
       (for-each
        (lambda (capture)
          (let ((r (car capture)) (tag (cadr capture)))
            (let loop ((n 0))
              (when (and (< n limit) (char-ready? r))
                (let ((bv (get-bytevector-some r)))
                  (unless (eof-object? bv)
                    (send-record capture-sink tag bv)
                    (loop (1+ n))))))))
        captures)
       (set! draining? #f)))))

(define (printed-pending?)
  ;; Whether a pipe holds output, or the pump is turning some into records: the
  ;; pipes are checked first, since the pump sets draining? before it reads them.
  (let ((pending (or (char-ready? (car (car captures)))
                     (char-ready? (car (cadr captures))))))
    (or pending draining?)))

(define (output-port-on fd)
  ;; A textual port for code to print on, writing into captured FD's pipe.
  (let ((port (fdopen (close-on-exec! (dup->fdes fd)) "w")))
    (set-port-encoding! port "UTF-8")
    (set-port-conversion-strategy! port 'substitute)
    (setvbuf port 'line)
    port))

(define (framed-port out tag)
  ;; A textual port whose every flushed chunk (a line, or more) becomes one
  ;; TAG record on OUT, a sink: a REPL server's clients share fd 1 and 2.
  (let ((port (make-custom-binary-output-port
               (string-append "sshdist-" tag)
               (lambda (bv start count)
                 (send-record out tag
                              (if (and (= start 0) (= count (bytevector-length bv)))
                                  bv
                                  (let ((copy (make-bytevector count)))
                                    (bytevector-copy! bv start copy 0 count)
                                    copy)))
                 count)
               #f #f #f)))
    (set-port-encoding! port "UTF-8")
    (set-port-conversion-strategy! port 'substitute)
    (setvbuf port 'line)
    port))

(define (make-streams sink)
  ;; Open a fresh (stdout . stderr) pair for one client's code.
  (if (null? captures)
      (cons (framed-port sink "o") (framed-port sink "e"))
      (cons (output-port-on 1) (output-port-on 2))))

(define (restore-standard-fds!)
  ;; Code may close or redirect fd 0, 1 or 2 ((close-fdes 1), dup2): each request
  ;; starts with /dev/null and the two pipes there again.
  (when null-fd
    (dup2 null-fd 0)
    (for-each (lambda (capture) (dup2 (caddr capture) (cadddr capture))) captures)))

(define (usable-streams streams sink)
  ;; Code may close its output ports, or set others; the next request gets its
  ;; own back, new ones where they were closed.
  (restore-standard-fds!)
  (let ((streams
         (if (or (port-closed? (car streams)) (port-closed? (cdr streams)))
             (begin
               (catch #t (lambda () (close-port (car streams))) (lambda _ #f))
               (catch #t (lambda () (close-port (cdr streams))) (lambda _ #f))
               (make-streams sink))
             streams)))
    (unless (and (eq? (current-output-port) (car streams))
                 (eq? (current-error-port) (cdr streams)))
      (set-current-output-port (car streams))
      (set-current-error-port (cdr streams))
      (current-warning-port (cdr streams)))
    streams))

(define (flush-printed)
  ;; Everything printed so far, by Guile or by a child, goes out before what
  ;; comes next (a value, the end of a form).
  (let ((out (current-output-port)) (err (current-error-port)))
    (unless (port-closed? out) (force-output out))
    (unless (port-closed? err) (force-output err)))
  (when (and (pair? captures) (printed-pending?))
    (drain-captures! 64)))
