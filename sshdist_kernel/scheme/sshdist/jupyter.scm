;;; sshdist rich display: the (sshdist jupyter) module, for the code a node runs.
;;;
;;; Rich display for notebooks, available in every module the REPL evaluates in.
;;; Each call sends one d record to the client that runs the code, in order with
;;; what the code printed; the client turns it into Jupyter's display_data.
;;;
;;; JSON (jupyter-json): a hash table, or a non-empty list of pairs whose every
;;; key is a string, symbol or keyword (an alist), is an object; any other list,
;;; and a vector, an array; strings, symbols (but null) and keywords are
;;; strings; exact integers are integers, other real numbers are floats (not
;;; infinities or NaN); #t and #f are true and false; the symbol null is null.
;;; A list of lists that start with strings, ("a" "b"), reads as an alist; a
;;; vector, #(("a" "b")), is the way to send it as an array of arrays.

(define-module (sshdist jupyter)
  #:use-module (rnrs bytevectors)
  #:use-module (srfi srfi-1)
  #:use-module ((sshdist display) #:select (send-display))
  #:export (jupyter-display jupyter-update-display jupyter-html jupyter-svg
            jupyter-png jupyter-markdown jupyter-latex jupyter-json)
  #:export-syntax (jupyter))

(define (wrong-type who position expecting value)
  ;; Guile's own wording; POSITION is a number, or a keyword's name.
  (scm-error 'wrong-type-arg who
             (if (number? position)
                 "Wrong type argument in position ~A (expecting ~A): ~S"
                 "Wrong type argument for ~A (expecting ~A): ~S")
             (list position expecting value) (list value)))

(define (one-line? text)
  (not (string-index text #\newline)))

(define (checked-mime who position mime)
  (if (and (string? mime) (not (string-null? mime)) (one-line? mime))
      mime
      (wrong-type who position "a MIME type string" mime)))

(define (checked-data who position data)
  (if (or (string? data) (bytevector? data))
      data
      (wrong-type who position "a string or a bytevector" data)))

(define (checked-id who position id)
  (let ((text (cond ((string? id) id)
                    ((symbol? id) (symbol->string id))
                    ((exact-integer? id) (number->string id))
                    (else #f))))
    (if (and text (not (string-null? text)) (one-line? text))
        text
        (wrong-type who position "a display id: a string, symbol or integer" id))))

(define (bundle who position mime data text)
  ;; ((MIME . DATA)), and TEXT as text/plain; MIME is argument POSITION of WHO and DATA
  ;; the next, or POSITION is #f: WHO (jupyter-html...) fixes MIME, DATA is its first.
  (let ((mime (if position (checked-mime who position mime) mime))
        (data (checked-data who (if position (1+ position) 1) data)))
    (cond ((not text) (list (cons mime data)))
          ((string? text) (list (cons mime data) (cons "text/plain" text)))
          (else (wrong-type who "#:text" "a string" text)))))

(define* (jupyter-display mime data #:key id text)
  "Show DATA (a string, or a bytevector of bytes such as a PNG) as MIME in the
notebook now, in order with what was printed.  ID names the output for
jupyter-update-display; TEXT is a text/plain alternative."
  (show "jupyter-display" 1 mime data id text))

(define (show who position mime data id text)
  ;; One display, its argument errors in WHO's name: the procedure the code called.
  (send-display "display" (and id (checked-id who "#:id" id))
                (bundle who position mime data text)))

(define* (jupyter-update-display id mime data #:key text)
  "Replace the output shown with display id ID by DATA as MIME."
  (send-display "update" (checked-id "jupyter-update-display" 1 id)
                (bundle "jupyter-update-display" 2 mime data text)))

(define* (jupyter-html html #:key id text)
  "Show HTML, a string."
  (show "jupyter-html" #f "text/html" html id text))

(define* (jupyter-svg svg #:key id text)
  "Show SVG, a string holding an <svg> element."
  (show "jupyter-svg" #f "image/svg+xml" svg id text))

(define* (jupyter-png png #:key id text)
  "Show PNG, a bytevector of a PNG file's bytes (or its base64 text)."
  (show "jupyter-png" #f "image/png" png id text))

(define* (jupyter-markdown markdown #:key id (text markdown))
  "Show MARKDOWN, a string; its source is the text/plain alternative."
  (show "jupyter-markdown" #f "text/markdown" markdown id text))

(define* (jupyter-latex latex #:key id (text latex))
  "Show LATEX, a string such as \"$$x^2$$\"; its source is the text/plain alternative."
  (show "jupyter-latex" #f "text/latex" latex id text))

(define* (jupyter-json value #:key id)
  "Show VALUE as JSON (application/json); see the mapping above this module."
  (let ((json (scheme->json value)))
    (show "jupyter-json" #f "application/json" json id json)))

(define (scheme->json value)
  (call-with-output-string
    (lambda (port) (write-json value port (make-hash-table)))))

(define (json-key? key)
  (or (string? key) (symbol? key) (keyword? key)))

(define (alist? value)
  (and (pair? value) (list? value)
       (every (lambda (entry) (and (pair? entry) (json-key? (car entry)))) value)))

(define (not-json value)
  (scm-error 'wrong-type-arg "jupyter-json" "Cannot be written as JSON: ~S"
             (list value) (list value)))

(define (write-json value port open)
  ;; OPEN holds the containers being written, around VALUE: one met again is a cycle.
  (cond
   ((eq? value #t) (display "true" port))
   ((eq? value #f) (display "false" port))
   ((eq? value 'null) (display "null" port))
   ((string? value) (write-json-string value port))
   ((symbol? value) (write-json-string (symbol->string value) port))
   ((keyword? value) (write-json-string (symbol->string (keyword->symbol value)) port))
   ((exact-integer? value) (display value port))
   ((real? value)
    (let ((x (exact->inexact value)))   ; an exact ratio can be too big for a double
      (if (or (nan? x) (inf? x)) (not-json value) (display x port))))
   ((or (pair? value) (vector? value) (hash-table? value))
    (when (hashq-ref open value)
      (scm-error 'wrong-type-arg "jupyter-json"
                 "Cannot be written as JSON: a list, vector or hash table contains itself"
                 '() (list value)))
    (hashq-set! open value #t)
    (cond
     ((hash-table? value) (write-json-object (hash-map->list cons value) port open))
     ((alist? value) (write-json-object value port open))
     ((list? value) (write-json-array value port open))
     ((vector? value) (write-json-array (vector->list value) port open))
     (else (not-json value)))
    (hashq-remove! open value))
   ((null? value) (display "[]" port))
   (else (not-json value))))

(define (write-json-array items port open)
  (display "[" port)
  (let loop ((items items) (first? #t))
    (unless (null? items)
      (unless first? (display "," port))
      (write-json (car items) port open)
      (loop (cdr items) #f)))
  (display "]" port))

(define (write-json-object entries port open)
  (display "{" port)
  (let loop ((entries entries) (first? #t))
    (unless (null? entries)
      (let ((key (caar entries)))
        (unless (json-key? key)
          (scm-error 'wrong-type-arg "jupyter-json"
                     "An object key must be a string, symbol or keyword: ~S"
                     (list key) (list key)))
        (unless first? (display "," port))
        (write-json key port open)
        (display ":" port)
        (write-json (cdar entries) port open)
        (loop (cdr entries) #f))))
  (display "}" port))

(define (write-json-string text port)
  (display "\"" port)
  (string-for-each
   (lambda (ch)
     (case ch
       ((#\") (display "\\\"" port))
       ((#\\) (display "\\\\" port))
       ((#\newline) (display "\\n" port))
       ((#\return) (display "\\r" port))
       ((#\tab) (display "\\t" port))
       (else
        (if (< (char->integer ch) 32)
            (begin
              (display "\\u00" port)
              (display (string-pad (number->string (char->integer ch) 16) 2 #\0) port))
            (write-char ch port)))))
   text)
  (display "\"" port))

(define jupyter-procedures
  `((display . ,jupyter-display) (update-display . ,jupyter-update-display)
    (html . ,jupyter-html) (svg . ,jupyter-svg) (png . ,jupyter-png)
    (markdown . ,jupyter-markdown) (latex . ,jupyter-latex) (json . ,jupyter-json)))

(define (jupyter-call name . args)
  (let ((proc (assq-ref jupyter-procedures name)))
    (if proc
        (apply proc args)
        (scm-error 'misc-error "jupyter" "No jupyter procedure ~S; there are ~S"
                   (list name (map car jupyter-procedures)) #f))))

(define-syntax jupyter
  ;; (jupyter display "text/html" "<b>hi</b>") is (jupyter-display "text/html" ...):
  ;; the first word names the procedure, unevaluated.
  (syntax-rules ()
    ((_ name arg ...) (jupyter-call 'name arg ...))))
