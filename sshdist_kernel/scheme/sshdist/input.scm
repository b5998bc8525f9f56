;;; sshdist remote REPL loop: the input of code that reads, as r records and
;;; s requests.

(define-module (sshdist input)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 binary-ports)
  #:use-module (ice-9 threads)
  #:use-module ((sshdist framing) #:select (send-record flush-sink read-request))
  #:use-module ((sshdist capture) #:select (flush-printed))
  #:export (code-input no-input asking-input-port socket-reply pumped-reply pump-reply!))

(define code-input (make-fluid #f))  ; the input port of a request that may ask

(define empty-input (make-fluid #f))  ; a client's port for code that may not ask

(define (no-input)
  ;; The input of code that may not ask: at its end for ever.  One port serves a
  ;; client's requests, not one a form (a port costs 2 KB of garbage), until code
  ;; closes it or puts characters back into it.
  (let ((port (fluid-ref empty-input)))
    (if (and port (not (port-closed? port)) (eof-object? (peek-char port)))
        port
        (let ((port (open-input-string "")))
          (fluid-set! empty-input port)
          port))))

(define (asking-input-port sink next-reply)
  ;; A port whose every read that finds nothing buffered sends an r record and
  ;; waits for the client's answer: (NEXT-REPLY ASK) calls ASK, which sends the
  ;; record, once it is ready for the answer, and gives a string, the end of
  ;; file, or 'gone when the client went away (then nothing more is asked).
  (let ((pending (make-bytevector 0)) (pos 0) (gone? #f))
    (define (read! bv start count)
      (when (and (= pos (bytevector-length pending)) (not gone?))
        (let ((reply (next-reply
                      (lambda ()
                        (flush-printed)
                        (send-record sink "r" "")
                        (flush-sink sink)))))
          (set! gone? (eq? reply 'gone))
          (set! pending (if (string? reply) (string->utf8 reply) (make-bytevector 0)))
          (set! pos 0)))
      (let ((n (min count (- (bytevector-length pending) pos))))
        (bytevector-copy! pending pos bv start n)
        (set! pos (+ pos n))
        n))
    (let ((port (make-custom-binary-input-port "sshdist-input" read! #f #f #f)))
      (set-port-encoding! port "UTF-8")
      (set-port-conversion-strategy! port 'substitute)
      port)))

(define (reply-of request)
  (if (string-null? (cdr request)) (eof-object) (cdr request)))

(define (socket-reply in ask)
  ;; A REPL server's client: its thread reads its own connection.  select, unlike
  ;; a blocking read, lets an interrupt (an async) through while nothing comes.
  (ask)
  (let wait ()
    (if (null? (car (select (list in) '() '() 1 0)))
        (wait)
        (let ((request (read-request in)))
          (cond ((eof-object? request) 'gone)
                ((eqv? (car request) #\s) (reply-of request))
                (else (wait)))))))

;;; On an exec channel the pump reads requests while the loop evaluates, and
;;; hands an s request to the loop through REPLIES: #f while the loop waits for
;;; no answer (an s then is dropped), else the answers not yet taken.

(define replies #f)
(define replies-lock (make-mutex))

(define (with-replies proc)
  (call-with-blocked-asyncs
   (lambda () (with-mutex replies-lock (proc)))))

(define (pumped-reply ask)
  ;; Polled, not a condition variable: a wait in usleep ends at once for an
  ;; interrupt, and the lock is never held across it.  REPLIES takes answers
  ;; before ASK sends the record: a quick answer must not be dropped.
  (dynamic-wind
    (lambda () (with-replies (lambda () (set! replies '()))))
    (lambda ()
      (ask)
      (let wait ()
        (let ((reply (with-replies
                      (lambda ()
                        (and (pair? replies)
                             (let ((first (car replies)))
                               (set! replies (cdr replies))
                               first))))))
          (or reply (begin (usleep 2000) (wait))))))
    (lambda () (with-replies (lambda () (set! replies #f))))))

(define (pump-reply! request)
  (with-replies
   (lambda ()
     (when replies
       (set! replies (append replies (list (reply-of request))))))))
