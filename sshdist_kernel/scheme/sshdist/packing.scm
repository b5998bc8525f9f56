;;; sshdist remote REPL loop: packed lists, the data path of distributed calls.
;;;
;;; Data comes in attached to a request (a, raw bytes code reads with
;;; attachment-list) and goes out as a b record (packed-result); the layout is the
;;; protocol's, in framing.scm.

(define-module (sshdist packing)
  #:use-module (rnrs bytevectors)
  #:use-module (srfi srfi-4)
  #:export (attachment attachment-list packed-result packed? packed-list packed-type
            packed-bytes pack-list unpack-list))

(define attachment (make-fluid #f))

(define (attachment-list type)
  "The bytes attached to this request as a list of little-endian 64-bit integers
(TYPE s64) or doubles (TYPE f64), or a packed list (TYPE pack, see unpack-list):
Guile's reader would take 20 times longer."
  (let ((bv (or (fluid-ref attachment) (make-bytevector 0)))
        (little? (eq? (native-endianness) 'little)))
    (case type
      ((s64) (if little? (s64vector->list bv) (bytevector->sint-list bv 'little 8)))
      ((f64) (if little?
                 (f64vector->list bv)
                 (map (lambda (i) (bytevector-ieee-double-ref bv i 'little))
                      (iota (quotient (bytevector-length bv) 8) 0 8))))
      ((pack) (unpack-list bv))
      (else (error "attachment-list: type is s64, f64 or pack, not" type)))))

(define packed-tag (list 'packed))

(define (packed? value)
  ;; A value of packed-result's, sent as a b record: (TAG LIST TYPE . BYTES).
  (and (pair? value) (eq? (car value) packed-tag)))

(define (packed-list value) (cadr value))     ; the list, for the value history
(define (packed-type value) (caddr value))    ; "s64" or "pack"
(define (packed-bytes value) (cdddr value))

(define (packed-result lst)
  "LST, to be sent to the client as raw little-endian 64-bit integers when it is
all such integers, or packed when pack-list can (the client reads bytes far faster
than text); otherwise LST."
  (let* ((little? (eq? (native-endianness) 'little))
         (v (and little? (pair? lst) (exact-integer? (car lst))
                 (false-if-exception (list->s64vector lst)))))
    (cond (v (cons* packed-tag lst "s64" v))
          ((and little? (pack-list lst)) => (lambda (bv) (cons* packed-tag lst "pack" bv)))
          (else lst))))

;;; Packed lists (the pack type of the protocol comment): a list of atoms, or of
;;; flat lists and vectors of atoms, as columns each side reads and writes with a
;;; few bytevector and string operations a list.  Guile's reader and writer take
;;; a character at a time, and the reader notes where each pair began: 100,000
;;; pairs take a second each way.  sshdist_kernel/packing.py is the client's side.

(define pack-header-fields 9)   ; items atoms shapes tags ints floats texts lengths bytes

(define (pack-tag x)
  ;; An atom's tag, or #f for a value that is not packed (#nil is also null?
  ;; and boolean?, so it is asked about first).
  (cond ((eq? x #nil) 8)
        ((eq? x #t) 6)
        ((eq? x #f) 7)
        ((string? x) 2)
        ((exact-integer? x) (and (<= -9223372036854775808 x 9223372036854775807) 0))
        ((and (real? x) (inexact? x)) 1)
        ((symbol? x) 3)
        ((keyword? x) 4)
        ((char? x) 5)
        (else #f)))

(define (pack-list lst)
  "LST as packed bytes, or #f when it is no proper list of atoms (see pack-tag)
and of proper lists and vectors of atoms."
  (and (list? lst)
       (let ((flat (if (any-container? lst) (pack-flatten lst) (cons '() lst))))
         (and flat
              (let ((columns (pack-columns (cdr flat))))
                (and columns
                     (apply pack-bytes (length lst) (length (cdr flat)) (car flat) columns)))))))

(define (any-container? lst)
  (and (pair? lst)
       (let ((x (car lst)))
         (or (and (or (pair? x) (null? x) (vector? x)) (not (eq? x #nil)))
             (any-container? (cdr lst))))))

(define (pack-flatten lst)
  ;; (SHAPES . ATOMS): each item's shape (-1 an atom, N a list of N, -2-N a
  ;; vector of N) and the atoms in order; #f if an item is an improper list.
  (let loop ((items lst) (shapes '()) (atoms '()))
    (if (null? items)
        (cons (reverse! shapes) (reverse! atoms))
        (let ((x (car items)))
          (cond ((eq? x #nil) (loop (cdr items) (cons -1 shapes) (cons x atoms)))
                ((or (null? x) (pair? x))
                 (and (list? x)
                      (loop (cdr items) (cons (length x) shapes) (reverse-onto x atoms))))
                ((vector? x)
                 (loop (cdr items) (cons (- -2 (vector-length x)) shapes)
                       (reverse-onto (vector->list x) atoms)))
                (else (loop (cdr items) (cons -1 shapes) (cons x atoms))))))))

(define (reverse-onto rev-head tail)
  (if (null? rev-head) tail (reverse-onto (cdr rev-head) (cons (car rev-head) tail))))

(define nul (string #\nul))

(define (pack-columns atoms)
  ;; (TAGS INTS FLOATS TEXTS COUNT) or #f if an atom is not packed: TAGS a
  ;; bytevector, of one tag when all atoms share it; INTS and FLOATS lists; TEXTS
  ;; the COUNT texts in order, a NUL string between two.  Every NaN is +nan.0,
  ;; as the text path gives it.
  (define (text x texts) (if (null? texts) (list x) (cons* x nul texts)))
  (let loop ((atoms atoms) (tags '()) (ints '()) (floats '()) (texts '()) (count 0) (mixed? #f))
    (if (null? atoms)
        (list (u8-list->bytevector (if (or mixed? (null? tags)) (reverse! tags) (list (car tags))))
              (reverse! ints) (reverse! floats) (reverse! texts) count)
        (let* ((x (car atoms))
               (tag (pack-tag x))
               (mixed? (or mixed? (and (pair? tags) (not (eqv? tag (car tags))))))
               (tags (cons tag tags))
               (rest (cdr atoms)))
          (case tag
            ((#f) #f)
            ((0) (loop rest tags (cons x ints) floats texts count mixed?))
            ((1) (loop rest tags ints (cons (if (nan? x) +nan.0 x) floats) texts count mixed?))
            ((2) (loop rest tags ints floats (text x texts) (1+ count) mixed?))
            ((3) (loop rest tags ints floats (text (symbol->string x) texts) (1+ count) mixed?))
            ((4) (loop rest tags ints floats (text (symbol->string (keyword->symbol x)) texts)
                       (1+ count) mixed?))
            ((5) (loop rest tags ints floats (text (string x) texts) (1+ count) mixed?))
            (else (loop rest tags ints floats texts count mixed?)))))))

(define (pack-bytes count atoms shapes tags ints floats texts text-count)
  ;; The header and the columns: the texts as they are, NUL between two, when
  ;; none holds a NUL; else one after the other, with their lengths.
  (let* ((joined (string-concatenate texts))
         (separated? (= (string-count joined #\nul) (max 0 (1- text-count))))
         (texts (if separated? '() (every-other texts)))
         (text (string->utf8 (if separated? joined (string-concatenate texts))))
         (lengths (list->s64vector (map string-length texts)))
         (shapes (list->s64vector (if (one-value? shapes) (list (car shapes)) shapes)))
         (ints (list->s64vector ints))
         (floats (list->f64vector floats))
         (words (lambda (v) (quotient (bytevector-length v) 8))))
    (bytevector-concatenate
     (list (list->s64vector
            (list count atoms (words shapes) (bytevector-length tags) (words ints)
                  (words floats) text-count (words lengths) (bytevector-length text)))
           shapes ints floats lengths tags text))))

(define (one-value? lst)
  ;; Whether LST is not empty and all its items are the first one.
  (and (pair? lst)
       (let same ((rest (cdr lst)))
         (or (null? rest) (and (eqv? (car rest) (car lst)) (same (cdr rest)))))))

(define (every-other lst)
  ;; The first item of LST, the third, and so on.
  (let loop ((lst lst) (out '()))
    (if (null? lst)
        (reverse! out)
        (loop (if (null? (cdr lst)) '() (cddr lst)) (cons (car lst) out)))))

(define (bytevector-concatenate bvs)
  (let ((out (make-bytevector (apply + (map bytevector-length bvs)))))
    (let loop ((bvs bvs) (at 0))
      (if (null? bvs)
          out
          (let ((n (bytevector-length (car bvs))))
            (bytevector-copy! (car bvs) 0 out at n)
            (loop (cdr bvs) (+ at n)))))))

(define (unpack-list bv)
  "The list pack-list (or the client) packed in BV, as Guile's reader would give
it from the text of the same list."
  (let* ((field (lambda (i) (bytevector-s64-ref bv (* 8 i) 'little)))
         (count (field 0)) (atoms (field 1)) (shapes (field 2)) (tags (field 3))
         (ints (field 4)) (floats (field 5)) (texts (field 6)) (lengths (field 7))
         (at-ints (+ (* 8 pack-header-fields) (* 8 shapes)))
         (at-floats (+ at-ints (* 8 ints)))
         (at-lengths (+ at-floats (* 8 floats)))
         (at-tags (+ at-lengths (* 8 lengths)))
         (at-text (+ at-tags tags))
         (text (utf8->string (bytevector-part bv at-text (field 8))))
         (items (unpack-atoms (bytevector-part bv at-tags tags) atoms
                              (s64-list bv at-ints ints)
                              (f64-list bv at-floats floats)
                              (cond ((zero? texts) '())
                                    ((zero? lengths) (split-at-nul text))
                                    (else (split-at-lengths
                                           text (s64-list bv at-lengths lengths))))))
         (shapes (s64-list bv (* 8 pack-header-fields) shapes))
         (items (cond ((null? shapes) items)
                      ((null? (cdr shapes)) (unpack-shapes items (make-list count (car shapes))))
                      (else (unpack-shapes items shapes)))))
    (unless (= (length items) count)
      (error "unpack-list: the items are not as many as the header says" count))
    items))

(define (bytevector-part bv start count)
  (let ((part (make-bytevector count)))
    (bytevector-copy! bv start part 0 count)
    part))

(define (s64-list bv start count)
  (let ((part (bytevector-part bv start (* 8 count))))
    (if (eq? (native-endianness) 'little)
        (s64vector->list part)
        (bytevector->sint-list part 'little 8))))

(define (f64-list bv start count)
  (if (eq? (native-endianness) 'little)
      (f64vector->list (bytevector-part bv start (* 8 count)))
      (map (lambda (i) (bytevector-ieee-double-ref bv (+ start (* 8 i)) 'little))
           (iota count))))

(define (split-at-nul text)
  ;; Fresh strings, as the reader's are: a string that shares TEXT's buffer (from
  ;; substring or string-split) copies all of TEXT when it is copied, as
  ;; string-upcase does (100,000 of them took seconds).
  (let loop ((start 0) (out '()))
    (let ((end (string-index text #\nul start)))
      (if end
          (loop (1+ end) (cons (substring/copy text start end) out))
          (reverse! (cons (substring/copy text start) out))))))

(define (split-at-lengths text lengths)
  (let loop ((lengths lengths) (start 0) (out '()))
    (if (null? lengths)
        (reverse! out)
        (let ((end (+ start (car lengths))))
          (loop (cdr lengths) end (cons (substring/copy text start end) out))))))

(define (text-atom tag text)
  (case tag
    ((2) text)
    ((3) (string->symbol text))
    ((4) (symbol->keyword (string->symbol text)))
    (else (string-ref text 0))))

(define (unpack-atoms tags count ints floats texts)
  ;; The atoms in order: each tag takes the next value of its column.
  (if (= (bytevector-length tags) 1)
      (case (bytevector-u8-ref tags 0)
        ((0) ints)
        ((1) floats)
        ((2) texts)
        ((3 4 5) (map (lambda (text) (text-atom (bytevector-u8-ref tags 0) text)) texts))
        ((6) (make-list count #t))
        ((7) (make-list count #f))
        ((8) (make-list count #nil))
        (else (error "unpack-list: unknown tag" (bytevector-u8-ref tags 0))))
      (let loop ((i 0) (ints ints) (floats floats) (texts texts) (out '()))
        (if (= i (bytevector-length tags))
            (reverse! out)
            (let ((tag (bytevector-u8-ref tags i)))
              (case tag
                ((0) (loop (1+ i) (cdr ints) floats texts (cons (car ints) out)))
                ((1) (loop (1+ i) ints (cdr floats) texts (cons (car floats) out)))
                ((2 3 4 5) (loop (1+ i) ints floats (cdr texts)
                                 (cons (text-atom tag (car texts)) out)))
                ((6) (loop (1+ i) ints floats texts (cons #t out)))
                ((7) (loop (1+ i) ints floats texts (cons #f out)))
                ((8) (loop (1+ i) ints floats texts (cons #nil out)))
                (else (error "unpack-list: unknown tag" tag))))))))

(define (unpack-shapes atoms shapes)
  ;; The items: atoms, or lists and vectors of the atoms that follow.  ATOMS is a
  ;; fresh list of unpack-list's own, so a list is cut out of it in place.
  (let loop ((shapes shapes) (atoms atoms) (out '()))
    (if (null? shapes)
        (reverse! out)
        (let ((shape (car shapes)))
          (cond ((= shape -1) (loop (cdr shapes) (cdr atoms) (cons (car atoms) out)))
                ((= shape 0) (loop (cdr shapes) atoms (cons '() out)))
                ((> shape 0)
                 (let* ((last (list-tail atoms (1- shape))) (rest (cdr last)))
                   (set-cdr! last '())
                   (loop (cdr shapes) rest (cons atoms out))))
                (else
                 (let ((size (- -2 shape)))
                   (loop (cdr shapes) (list-tail atoms size)
                         (cons (list->vector (list-head atoms size)) out)))))))))
