;;; sshdist remote REPL loop: an error's text, in Guile's own REPL's words.

(define-module (sshdist errors)
  #:use-module ((sshdist arglists) #:select (procedure-text))
  #:export (note-error-frame error-text))

(define error-frame (make-fluid #f))    ; (NAME . ARGUMENTS) of the call an error left

(define (note-error-frame key . args)
  ;; Guile's evaluator raises some errors from a primitive's generic code, with no
  ;; procedure name or argument position ("Value out of range: 5", where Guile's
  ;; REPL says "In procedure vector-ref: Argument 2 out of range: 5"); the stack,
  ;; read before it unwinds, still holds the call.  Only for those errors.
  (fluid-set! error-frame #f)
  (when (rewordable? key args)
    (fluid-set! error-frame (false-if-exception (raising-call (make-stack #t))))))

(define (rewordable? key args)
  ;; The two generic messages the evaluator's primitives raise; any other error
  ;; ("Wrong type to apply: 5") already reads as Guile's own.
  (and (= (length args) 4)
       (string? (cadr args))
       (case key
         ((out-of-range) (and (not (car args))
                              (string-prefix? "Value out of range" (cadr args))))
         ((wrong-type-arg) (string=? (cadr args) "Wrong type (expecting ~A): ~S"))
         (else #f))))

(define (raising-call stack)
  ;; The first named frame below the one that raised the error.
  (let ((name (frame-procedure 'frame-procedure-name))
        (arguments (frame-procedure 'frame-arguments))
        (depth (min 12 (stack-length stack))))
    (let find ((i 0) (raised? #f))
      (and (< i depth)
           (let ((proc (name (stack-ref stack i))))
             (cond ((memq proc '(raise-exception throw scm-error)) (find (1+ i) #t))
                   ((and raised? (symbol? proc))
                    (cons (symbol->string proc) (arguments (stack-ref stack i))))
                   (else (find (1+ i) raised?))))))))

(define (frame-procedure name)
  ;; Bound in (guile) since 3.0, in (system vm frame) before.
  (if (defined? name)
      (module-ref the-root-module name)
      (module-ref (resolve-interface '(system vm frame)) name)))

(define (argument-position value call)
  ;; The position of VALUE among the call's arguments, if it is there only once.
  (let loop ((args (cdr call)) (n 1) (found #f))
    (cond ((not (pair? args)) found)
          ((eqv? (car args) value) (and (not found) (loop (cdr args) (1+ n) n)))
          (else (loop (cdr args) (1+ n) found)))))

(define (guile-wording key args call)
  ;; ARGS as Guile's REPL would have them: procedure name and argument position.
  (let* ((subr (or (car args) (and call (car call))))
         (format-args (caddr args))
         (value (and (pair? format-args) (car (last-pair format-args))))
         (position (and call (pair? format-args) (argument-position value call))))
    (cond
     ((not subr) args)
     ((and (eq? key 'out-of-range) position)
      (list subr "Argument ~A out of range: ~S" (list position value) (cadddr args)))
     ((and (eq? key 'wrong-type-arg) position (= (length format-args) 2))
      (list subr "Wrong type argument in position ~A (expecting ~A): ~S"
            (list position (car format-args) value) (cadddr args)))
     (else (cons subr (cdr args))))))

(define (error-text key args)
  (let ((call (fluid-ref error-frame)))
    (fluid-set! error-frame #f)
    (call-with-output-string
      (lambda (port)
        (print-exception port #f key
                         (if (rewordable? key args)
                             (guile-wording key args call)
                             (with-defined-names key args)))))))

(define (with-defined-names key args)
  ;; "Wrong number of arguments to #<procedure add (a b)>": closures made by the
  ;; evaluator print placeholder names; one defined at the REPL (it has an arglist
  ;; property, see record-arglists!) prints with its own, as Guile's REPL shows it.
  (let ((proc (and (eq? key 'wrong-number-of-args) (= (length args) 4)
                   (pair? (caddr args)) (car (caddr args)))))
    (if (and (procedure? proc) (procedure-property proc 'arglist))
        (list (car args) (cadr args)
              (cons (procedure-text proc) (cdr (caddr args))) (cadddr args))
        args)))
