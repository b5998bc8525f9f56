;;; sshdist remote REPL loop: the argument names of procedures defined at the REPL.
;;;
;;; Guile's evaluator keeps no argument names: the loop reads them from a
;;; definition's lambda list, for procedure-arguments (a notebook's Shift-Tab) and
;;; for error messages that print the procedure.

(define-module (sshdist arglists)
  #:use-module (system repl common)
  #:use-module (system base language)
  #:export (record-arglists! procedure-text syntax-unwrap))

(define (procedure-text proc)
  ;; #<procedure f (a #:optional b #:key size . rest)>, as Guile prints a compiled one.
  (let* ((arglist (procedure-property proc 'arglist))
         (names (append (car arglist)
                        (if (null? (cadr arglist)) '() (cons #:optional (cadr arglist)))
                        (if (null? (caddr arglist))
                            '()
                            (cons #:key (map (lambda (k) (keyword->symbol (car k)))
                                             (caddr arglist))))))
         (rest (list-ref arglist 4)))
    (format #f "#<procedure ~a ~a>" (or (procedure-name proc) "_")
            (if rest (append names rest) names))))

(define (lambda-list->arglist formals star?)
  ;; (REQUIRED OPTIONAL KEYWORDS ALLOW-OTHER-KEYS? REST) as procedure-arguments
  ;; reads it, from a lambda (or, STAR?, lambda*) list; #f if it is not one.
  (define (name spec) (if (pair? spec) (car spec) spec))
  (let loop ((fs formals) (mode 'req) (req '()) (opt '()) (keys '()) (aok #f))
    (define (finish rest)
      (let number ((ks (reverse keys))
                   (i (+ (length req) (length opt) (if rest 1 0)))
                   (acc '()))
        (if (null? ks)
            (list (reverse req) (reverse opt) (reverse acc) aok rest)
            (number (cdr ks) (1+ i) (cons (cons (car ks) i) acc)))))
    (cond
     ((null? fs) (finish #f))
     ((symbol? fs) (finish fs))
     ((not (pair? fs)) #f)
     ((and star? (eq? (car fs) #:optional) (eq? mode 'req))
      (loop (cdr fs) 'opt req opt keys aok))
     ((and star? (eq? (car fs) #:key) (memq mode '(req opt)))
      (loop (cdr fs) 'key req opt keys aok))
     ((and star? (eq? (car fs) #:allow-other-keys) (eq? mode 'key))
      (loop (cdr fs) 'aok req opt keys #t))
     ((and star? (eq? (car fs) #:rest))
      (and (pair? (cdr fs)) (symbol? (cadr fs)) (null? (cddr fs)) (finish (cadr fs))))
     ((eq? mode 'req)
      (and (symbol? (car fs)) (loop (cdr fs) mode (cons (car fs) req) opt keys aok)))
     ((not (symbol? (name (car fs)))) #f)
     ((eq? mode 'opt) (loop (cdr fs) mode req (cons (name (car fs)) opt) keys aok))
     ((eq? mode 'key)
      (let* ((spec (car fs))
             (kw (if (and (pair? spec) (pair? (cdr spec)) (pair? (cddr spec)))
                     (caddr spec)
                     (symbol->keyword (name spec)))))
        (and (keyword? kw) (loop (cdr fs) mode req opt (cons kw keys) aok))))
     (else #f))))

(define (definition-arglist form)
  ;; (NAME . ARGLIST) when FORM defines NAME as a procedure from a lambda list.
  (and (memq (car form) '(define define* define-public)) (pair? (cdr form)) (pair? (cddr form))
       (let ((target (cadr form)) (star? (eq? (car form) 'define*)))
         (cond
          ((pair? target)
           (let inner ((target target))   ; curried: ((f a) b) defines f of (a)
             (cond ((pair? (car target)) (inner (car target)))
                   ((symbol? (car target))
                    (let ((arglist (lambda-list->arglist (cdr target) star?)))
                      (and arglist (cons (car target) arglist))))
                   (else #f))))
          ((and (symbol? target) (null? (cdddr form))
                (pair? (caddr form)) (memq (car (caddr form)) '(lambda lambda*))
                (pair? (cdr (caddr form))))
           (let ((arglist (lambda-list->arglist (cadr (caddr form))
                                                (eq? (car (caddr form)) 'lambda*))))
             (and arglist (cons target arglist))))
          (else #f)))))

(define (record-arglists! repl form)
  ;; Guile's evaluator (interp) keeps no argument names: a top-level definition
  ;; of a procedure from a lambda list in FORM (as read: a syntax object) gives
  ;; the procedure an arglist property, which procedure-arguments reads.  Only a
  ;; form that starts with a defining word is looked at; anything odd is ignored.
  (define (defined-names form)
    ;; Every name FORM defines at top level, procedure or not, once each time.
    (cond ((not (pair? form)) '())
          ((eq? (car form) 'begin) (apply append (map defined-names (cdr form))))
          ((and (memq (car form) '(define define* define-public)) (pair? (cdr form)))
           (let name ((target (cadr form)))
             (cond ((symbol? target) (list target))
                   ((pair? target) (name (car target)))
                   (else '()))))
          (else '())))
  (define (record! form twice)
    ;; A name defined twice in one form (define (f a) ...) (define f car) is left
    ;; alone: its binding at the end may be another procedure than the one defined.
    (if (eq? (car form) 'begin)
        (for-each (lambda (f) (when (pair? f) (record! f twice))) (cdr form))
        (let* ((found (definition-arglist form))
               (var (and found (not (memq (car found) twice))
                         (module-variable (current-module) (car found))))
               (proc (and var (variable-bound? var) (variable-ref var))))
          (when (procedure? proc)
            (set-procedure-property! proc 'arglist (cdr found))))))
  (let* ((expr (syntax-unwrap form))
         (head (and (pair? expr) (syntax-unwrap (car expr)))))
    (when (and (memq head '(define define* define-public begin))
               (eq? (language-name (repl-language repl)) 'scheme))
      (catch #t
        (lambda ()
          (let* ((datum (syntax->datum form))
                 (names (defined-names datum)))
            (record! datum (filter (lambda (n) (memq n (cdr (memq n names)))) names))))
        (lambda _ #f)))))

(define (syntax-unwrap x)
  (if ((@ (system syntax internal) syntax?) x)
      ((@ (system syntax internal) syntax-expression) x)
      x))
