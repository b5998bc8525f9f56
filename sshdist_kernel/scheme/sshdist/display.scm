;;; sshdist remote REPL loop: rich displays, the d records (jupyter.scm makes them).

(define-module (sshdist display)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 binary-ports)
  #:use-module ((sshdist framing) #:select (send-record))
  #:use-module ((sshdist capture) #:select (flush-printed))
  #:export (display-sink send-display jupyter-interface))

(define display-sink (make-parameter #f))  ; the sink of the client whose code runs

(define (send-display kind id entries)
  ;; ENTRIES: ((MIME . DATA) ...), DATA a string or a bytevector; see the d record.
  (let ((sink (display-sink)))
    (unless sink
      (scm-error 'misc-error "jupyter-display" "No client to display to" '() #f))
    (flush-printed)
    (send-record
     sink "d"
     (call-with-values open-bytevector-output-port
       (lambda (port get)
         (put-bytevector port (string->utf8 (string-append kind "\n" (or id "") "\n")))
         (for-each
          (lambda (entry)
            (let* ((data (cdr entry))
                   (bv (if (bytevector? data) data (string->utf8 data))))
              (put-bytevector port (string->utf8
                                    (string-append (car entry) "\n"
                                                   (if (bytevector? data) "B" "T")
                                                   (number->string (bytevector-length bv))
                                                   "\n")))
              (put-bytevector port bv)))
          entries)
         (get))))))

(define jupyter-interface
  ;; (sshdist jupyter), used by every module code runs in, as (value-history) is.
  (let ((interface #f))
    (lambda ()
      (unless interface (set! interface (resolve-interface '(sshdist jupyter))))
      interface)))
