;;; sshdist remote REPL loop: one client's loop, requests in and records out.

(define-module (sshdist loop)
  #:use-module (system repl common)
  #:use-module (system base language)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 binary-ports)
  #:use-module ((sshdist framing)
                #:select (make-sink sink? sink-port send-record flush-sink close-sink
                          start-flusher! read-request bytevector-append))
  #:use-module ((sshdist packing) #:select (attachment))
  #:use-module ((sshdist errors) #:select (note-error-frame error-text))
  #:use-module ((sshdist interrupts)
                #:select (register-client! forget-client! interrupt-client! forget-interrupt!
                          leave-if-forked! cancelled-request? settle-if-interrupted!))
  #:use-module ((sshdist capture)
                #:select (capturing? make-streams usable-streams flush-printed))
  #:use-module ((sshdist display) #:select (display-sink))
  #:use-module ((sshdist input) #:select (code-input asking-input-port socket-reply))
  #:use-module ((sshdist evaluation) #:select (run-source))
  #:export (sshdist-serve))

(define (handle-request repl request out busy)
  ;; Answer one e, q, i or m request with its records, ending in p (i for i, m for m).
  (define start (get-internal-real-time))
  (define (prompt-record)
    (send-record out "p" (bytevector-append
                          (prompt-payload (current-module) (language-name (repl-language repl)))
                          (string->utf8
                           (string-append
                            "\n" (number->string
                                   (quotient (* 1000000 (- (get-internal-real-time) start))
                                             internal-time-units-per-second)))))))
  (cond
   ((eqv? (car request) #\i)
    (interrupt-client! (string->number (cdr request)))
    (send-record out "i" ""))
   ((eqv? (car request) #\m)  ; never cancelled: what came before it is answered
    (send-record out "m" (cdr request))
    (settle-if-interrupted!))
   ((cancelled-request? busy)
    (send-record out "g" "")
    (send-record out "x" "interrupted\nInterrupted before it began (it waited behind an interrupted request).")
    (settle-if-interrupted!)
    (prompt-record))
   (else
    ;; Records before g are earlier code's (a thread that printed after its
    ;; request ended): the client keeps them apart from this request's own.  What
    ;; such a thread left in a port's buffer (no newline yet) goes out before g too,
    ;; or this request's first flush would make it this request's output.
    (catch #t flush-printed (lambda _ #f))
    (send-record out "g" "")
    (catch #t
      (lambda ()
        (forget-interrupt! busy)
        (run-source repl (cdr request) out busy (eqv? (car request) #\e)))
      (lambda (key . args)
        (leave-if-forked!)
        (catch #t flush-printed (lambda _ #f))
        (if (eq? key 'quit)
            (send-record out "x" "quit\nThe REPL was asked to quit; it keeps running.")
            (send-record out "x" (string-append (symbol->string key) "\n"
                                                (error-text key args)))))
      note-error-frame)
    (settle-if-interrupted!)
    (prompt-record))))

(define prompt-payload
  ;; "MODULE\nLANGUAGE" as bytes, the module's name as written, remembered for
  ;; the module and language last asked about: requests nearly always end where
  ;; the last one did.  One vector, replaced whole: a REPL server's threads share it.
  (let ((last (vector #f #f #f #f)))      ; module, its name, language, payload
    (lambda (module language)
      (let ((name (module-name module)) (seen last))
        (if (and (eq? module (vector-ref seen 0)) (eq? name (vector-ref seen 1))
                 (eq? language (vector-ref seen 2)))
            (vector-ref seen 3)
            (let ((payload (string->utf8 (string-append (object->string name) "\n"
                                                        (symbol->string language)))))
              (set! last (vector module name language payload))
              payload))))))

(define* (sshdist-serve in out #:optional (busy (make-variable #f))
                        #:key (next-request read-request) next-reply)
  "Serve framed requests read from IN, writing records to OUT, until IN ends.
NEXT-REPLY answers code that reads its input (see asking-input-port); by
default the evaluating thread reads IN itself."
  (let* ((out (if (sink? out) out (make-sink out)))
         (next-reply (or next-reply (lambda (ask) (socket-reply in ask))))
         (repl (make-repl (current-language) #f))
         (id (register-client! busy)))
    (repl-option-set! repl 'interp #t)
    ;; The marker lets the client skip whatever the login shell printed first.
    (put-bytevector (sink-port out) (string->utf8 "\x00sshdist-rrepl\x00"))
    (send-record out "h" (string-append (number->string (getpid)) "\n" (version)
                                        "\n" (number->string id)))
    (flush-sink out)
    (unless (capturing?) (start-flusher!))
    (let ((streams (make-streams out)))
      (parameterize ((current-output-port (car streams))
                     (current-error-port (cdr streams))
                     (current-warning-port (cdr streams))
                     (current-language (repl-language repl))
                     (display-sink out))
        (let loop ((streams streams))
          ;; An interrupt that lands as an evaluation ends can unwind through the
          ;; code that clears BUSY; clear it here too, so an idle loop is never
          ;; interrupted (that would lose the request being read).
          (variable-set! busy #f)
          (let ((request (next-request in)))
            (cond
             ((eof-object? request))
             ((eqv? (car request) #\a)
              (fluid-set! attachment (cdr request))
              (loop streams))
             ((eqv? (car request) #\w)
              (fluid-set! code-input (asking-input-port out next-reply))
              (loop streams))
             ((memv (car request) '(#\s #\c))  ; an answer to an interrupted read,
              (loop streams))                    ; or nothing waits to be cancelled
             (else
              (let ((streams (usable-streams streams out)))
                (handle-request repl request out busy)
                (fluid-set! attachment #f)
                (fluid-set! code-input #f)
                (flush-sink out)
                (loop streams))))))))
    (close-sink out)
    (forget-client! id)))
