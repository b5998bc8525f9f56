;;; sshdist remote REPL loop: evaluation, one request's source form by form, as
;;; if typed at Guile's REPL, each value a record.

(define-module (sshdist evaluation)
  #:use-module (system repl common)
  #:use-module (system base language)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 history)
  #:use-module ((sshdist framing) #:select (send-record bytevector-append))
  #:use-module ((sshdist packing) #:select (packed? packed-list packed-type packed-bytes))
  #:use-module ((sshdist arglists) #:select (record-arglists! syntax-unwrap))
  #:use-module ((sshdist interrupts) #:select (leave-if-forked! interrupt-asked?))
  #:use-module ((sshdist capture) #:select (flush-printed))
  #:use-module ((sshdist display) #:select (jupyter-interface))
  #:use-module ((sshdist input) #:select (code-input no-input))
  #:export (run-source eval-forms prepare-process))

(define history-count 0)
(define history-module (resolve-module '(value-history)))

(define (remember! value)
  ;; Guile's own value history: $N names the Nth value in every module.
  (set! history-count (1+ history-count))
  (let ((name (string->symbol (string-append "$" (number->string history-count)))))
    (module-define! history-module name value)
    (module-export! history-module (list name))
    history-count))

(define numbering (make-fluid #t))      ; #f while a quiet request runs

(define (print-history-name value)
  ;; Meta-commands such as ,time print values through Guile's own
  ;; repl-print; number those values in the same sequence, unless quiet.
  (unless (or (unspecified? value) (not (fluid-ref numbering)))
    (format #t "$~a = " (remember! value))))

(define (star-definition? repl form)
  ;; A top-level (define* ...) in Scheme, on a Guile whose compiler can be told to
  ;; do no optimizing (3.0 on): see compiled-thunk.
  (and (eq? (language-name (repl-language repl)) 'scheme)
       (let ((expr (syntax-unwrap form)))
         (and (pair? expr) (eq? (syntax-unwrap (car expr)) 'define*)))
       (module-defined? (resolve-interface '(system base compile))
                        'default-optimization-level)))

(define (compiled-thunk form)
  ;; The evaluator's lambda* procedures fail a wrong call with a bare "In procedure
  ;; eval: Wrong number of arguments"; compiled, as Guile's own REPL compiles every
  ;; form, they say "Wrong number of arguments to #<procedure f (a #:optional b)>".
  ;; At level 0, without warnings: as quick as can be (a 1,000-clause body takes
  ;; 80 ms, 20 s at Guile's default level), and, as in the evaluator, a builtin
  ;; the user redefines later is seen (no primitive is inlined).  Guile 2.2 has no
  ;; such level, and there the evaluator stays (2 s for 300 clauses).
  (let* ((compiler (resolve-interface '(system base compile)))
         (compile (module-ref compiler 'compile))
         (warnings (module-ref compiler 'default-warning-level))
         (optimizing (module-ref compiler 'default-optimization-level)))
    (lambda ()
      (parameterize ((warnings 0) (optimizing 0))
        (compile form #:env (current-module))))))

(define (eval-form repl form out busy remember?)
  (module-use! (current-module) (history-interface))
  (let ((thunk (if (star-definition? repl form)
                   (compiled-thunk form)
                   (repl-prepare-eval-thunk repl (repl-parse repl form)))))
    (call-with-values
        (lambda ()
          (dynamic-wind
            (lambda () (variable-set! busy #t))
            (lambda ()
              (call-with-prompt (default-prompt-tag)
                (lambda () (start-stack #t (thunk)))
                (lambda (k . args) (values))))
            (lambda () (variable-set! busy #f))))
      (lambda values
        (leave-if-forked!)
        (record-arglists! repl form)
        (when (interrupt-asked? busy)
          (scm-error 'signal #f "User interrupt" '() '()))
        (flush-printed)
        (for-each
         (lambda (value)
           (cond
            ((unspecified? value))
            ((packed? value)
             (send-record out "b" (bytevector-append
                                   (string->utf8
                                    (string-append
                                     (number->string (if remember? (remember! (packed-list value)) 0))
                                     "\n" (packed-type value) "\n"))
                                   (packed-bytes value))))
            (else
             (let ((text (if (exact-integer? value)  ; as write has it, without a port
                             (number->string value)
                             (call-with-output-string (lambda (p) (write value p))))))
               (send-record out "v" (string-append
                                     (number->string (if remember? (remember! value) 0))
                                     "\n" text))))))
         values)))))

(define (meta-command)
  ;; Loaded at the first meta-command: it costs a fresh REPL 15 ms to start.
  (module-ref (resolve-interface '(system repl command)) 'meta-command))

(define (skip-whitespace port)
  (let ((ch (peek-char port)))
    (cond ((eof-object? ch) ch)
          ((char-whitespace? ch) (read-char port) (skip-whitespace port))
          (else ch))))

(define (run-source repl source out busy remember?)
  ;; Read and evaluate every form of SOURCE in turn, as if typed at the REPL.
  (let ((port (open-input-string (string-append source "\n"))))
    (let loop ()
      (let ((ch (skip-whitespace port)))
        (unless (eof-object? ch)
          (if (eqv? ch #\,)
              (begin
                (read-char port)
                (with-fluids ((numbering remember?))
                  (with-input-from-port port (lambda () ((meta-command) repl))))
                (flush-printed)
                (send-record out "f" "")
                (loop))
              (let ((form ((language-reader (repl-language repl)) port (current-module))))
                (unless (eof-object? form)
                  (module-use! (current-module) (jupyter-interface))
                  ;; eval-form flushes what the form printed before its values.
                  (with-input-from-port (or (fluid-ref code-input) (no-input))
                    (lambda () (eval-form repl form out busy remember?)))
                  (send-record out "f" "")
                  (loop)))))))))

(define history-interface
  ;; Looked up once, not once a form.
  (let ((interface #f))
    (lambda ()
      (unless interface (set! interface (resolve-interface '(value-history))))
      interface)))

(define (eval-forms forms)
  "FORMS evaluated in turn as primitive-eval does, their values in a list.  What one
printed ends its line before the next begins: a job of a distributed call may hold
several expressions, and each one's output is shown as its own."
  (let loop ((forms forms) (done '()))
    (if (null? forms)
        (reverse done)
        (let ((value (primitive-eval (car forms))))
          (unless (null? (cdr forms))
            (for-each (lambda (port) (unless (zero? (port-column port)) (newline port)))
                      (list (current-output-port) (current-error-port))))
          (loop (cdr forms) (cons value done))))))

(define (prepare-process)
  ;; Once a process, before its first loop: values are numbered by the loop
  ;; (remember!), those meta-commands print too, and code runs in (guile-user).
  (disable-value-history!)
  (add-hook! before-print-hook print-history-name)
  (set-current-module (resolve-module '(guile-user)))
  ;; (ice-9 rdelim) is loaded already: (read-line) in a cell reads the notebook's input.
  (process-use-modules '(((ice-9 session)) ((ice-9 regex)) ((ice-9 threads)) ((ice-9 rdelim)))))
