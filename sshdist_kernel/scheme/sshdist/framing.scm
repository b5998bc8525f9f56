;;; sshdist remote REPL loop: the framing of requests and records.
;;;
;;; Guile's own REPL is made for people: its prompt is printed only when no
;;; input is waiting, printed output is glued to values, errors open nested
;;; debugger levels.  This loop keeps Guile's REPL machinery (languages,
;;; meta-commands, value history, the evaluator) and frames everything it
;;; writes, so the client never has to guess where a value begins.
;;;
;;; Requests, client to loop:   e<LEN>\n<LEN bytes of UTF-8 source>
;;; Records, loop to client:    <TAG><LEN>\n<LEN bytes>, after "\0sshdist-rrepl\0"
;;;   h  hello: "PID\nGUILE-VERSION\nCLIENT"  o  printed on standard output
;;;   e  printed on standard error            v  a value: "N\nWRITTEN-VALUE"
;;;   f  one form is done                     x  an error: "KEY\nMESSAGE"
;;;   p  request done: "MODULE\nLANGUAGE\nMICROSECONDS" (how long the loop worked on it)
;;;   i  an interrupt request was handled
;;; i<LEN>\n<CLIENT> interrupts an evaluation: on the REPL of an exec channel it
;;; may be sent while the evaluation runs (CLIENT is ignored: it is a Ctrl-C for
;;; the REPL's process group); a REPL server's client sends it on a second
;;; connection, naming the client to interrupt.  Every i request gets one i record.
;;; Requests may be sent before the last one is answered (a distributed call keeps
;;; a node's next chunk waiting there): they are answered in order, and an in-band
;;; i also cancels those still waiting, each answered with x (key interrupted) and p.
;;; c<LEN>\n (empty) cancels them so too, unanswered, and lets the running one finish.
;;; q<LEN>\n<SOURCE> evaluates as e does but leaves the value history alone (N is 0):
;;; for completion and inspection, which must not renumber the user's values.
;;; a<LEN>\n<BYTES> attaches raw bytes to the next e request, unanswered: code reads
;;; them with (attachment-list 's64) or (attachment-list 'f64), raw little-endian
;;; int64 or doubles, or (attachment-list 'pack), a packed list; not with the reader.
;;;   b  a value sent as bytes: "N\nTYPE\n" and the bytes, a list that
;;;      (packed-result LIST) found to be all 64-bit integers (TYPE s64, raw) or
;;;      that it could pack (TYPE pack)
;;;   d  a rich display (see (sshdist jupyter) in jupyter.scm): "KIND\nID\n", KIND display
;;;      or update, ID the display id or empty, then for each MIME type of the
;;;      bundle "MIME\n" T or B, "LEN\n" and LEN bytes: T for text (UTF-8), B for
;;;      bytes the code gave as a bytevector.  Printed output before it is flushed
;;;      first, as before a value.
;;;   g  the request begins: what comes before it is earlier code's (a thread's)
;;;   r  the code reads its current input port and waits for one s request; the
;;;      payload is a prompt (empty today).  Sent only after a w request.
;;; m<LEN>\n<MARK> is answered with an m record of the same MARK once every request
;;; sent before it is answered (never cancelled, nothing evaluated): the client's
;;; rrepl-skip-to-prompt, past requests it did not count (sent by hand).
;;; w<LEN>\n (empty) lets the next e or q request ask for input, unanswered:
;;; without it, reading the current input port gives the end of file at once.
;;; s<LEN>\n<TEXT> answers an r record with TEXT (UTF-8, a line with its newline);
;;; s0 (empty) is the end of the input.  An s request nobody waits for is dropped.
;;;
;;; A packed list holds atoms, or proper lists and vectors of atoms; an atom is an
;;; integer of 64 bits, a flonum, a string, a symbol, a keyword, a character, #t,
;;; #f or #nil.  Anything else keeps the text.  In order, numbers little-endian:
;;;   header   9 int64: ITEMS ATOMS SHAPES TAGS INTS FLOATS TEXTS LENGTHS BYTES
;;;   shapes   SHAPES int64: none when every item is an atom, one when all items
;;;            share it, else one an item: -1 an atom, N a list of N, -2-N a vector of N
;;;   ints     INTS int64; then floats, FLOATS doubles (a NaN as 0x7ff8000000000000)
;;;   lengths  LENGTHS int64: none when no text holds a NUL, the texts then being
;;;            separated by one; else each text's length in characters
;;;   tags     TAGS bytes, one an atom, or one for all atoms when they share it:
;;;            0 integer, 1 flonum (the next of their columns), 2 string, 3 symbol,
;;;            4 keyword, 5 character (the next text), 6 #t, 7 #f, 8 #nil
;;;   text     BYTES of UTF-8: the texts (strings, names, characters), in order
;;; The atoms of a list or vector come in its place.  A value packs to the same
;;; bytes on either side (sshdist_kernel/packing.py is the client's).
;;;
;;; On an exec channel the records travel on a private copy of the channel's
;;; stdout, and requests arrive on a private copy of its stdin, both closed on
;;; exec: file descriptors 0, 1 and 2, which code and its child processes use and
;;; inherit, are /dev/null and two pipes this loop reads.  What anything writes
;;; there becomes o and e records, so (system "echo hi") is printed output, not
;;; a broken protocol.

(define-module (sshdist framing)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 binary-ports)
  #:use-module (ice-9 rdelim)
  #:use-module (ice-9 threads)
  #:export (make-sink sink? sink-port sink-pending? send-record flush-sink close-sink
            start-flusher! read-request bytevector-append))

(define (make-sink port)
  ;; The real, binary channel to one client: its port, a lock (the pump
  ;; thread writes too), and whether records wait in its buffer.
  (let ((sink (vector port (make-mutex) #f)))
    (with-mutex sinks-lock (set! sinks (cons sink sinks)))
    sink))

(define sinks '())
(define sinks-lock (make-mutex))

(define (sink? x)
  ;; A sink, not a port: sshdist-serve takes either.
  (vector? x))

(define (sink-port sink)
  (vector-ref sink 0))

(define (sink-pending? sink)
  ;; Whether records wait in the sink's buffer, to be flushed.
  (vector-ref sink 2))

(define (send-record sink tag payload)
  ;; PAYLOAD is a string or a bytevector.  Buffered: see flush-sink.  Asyncs
  ;; are blocked, so an interrupt never lands inside a record or its lock.
  (let ((bv (if (bytevector? payload) payload (string->utf8 payload)))
        (port (vector-ref sink 0)))
    (call-with-blocked-asyncs
     (lambda ()
       (with-mutex (vector-ref sink 1)
         (put-u8 port (char->integer (string-ref tag 0)))
         (put-length port (bytevector-length bv))
         (put-u8 port 10)
         (put-bytevector port bv)
         (vector-set! sink 2 #t))))))

(define (put-length port n)
  ;; N in decimal, a byte a digit: a record's header makes no strings (a
  ;; request of one form sends four records).
  (when (>= n 10) (put-length port (quotient n 10)))
  (put-u8 port (+ 48 (remainder n 10))))

(define (flush-sink sink)
  (call-with-blocked-asyncs
   (lambda ()
     (with-mutex (vector-ref sink 1)
       (vector-set! sink 2 #f)
       (force-output (vector-ref sink 0))))))

(define (close-sink sink)
  (with-mutex sinks-lock (set! sinks (delq sink sinks))))

(define flusher #f)

(define (start-flusher!)
  ;; A REPL server's printed output reaches its clients within 20 ms even when
  ;; the code goes quiet, and a burst of lines leaves in a few large writes.
  (with-mutex sinks-lock
    (unless flusher
      (set! flusher
            (call-with-new-thread
             (lambda ()
               (let loop ()
                 (usleep 20000)
                 (for-each (lambda (sink)
                             (when (vector-ref sink 2)
                               (catch #t (lambda () (flush-sink sink))
                                 (lambda args (close-sink sink)))))
                           (with-mutex sinks-lock sinks))
                 (loop))))))))

(define (bytevector-append a b)
  (let ((out (make-bytevector (+ (bytevector-length a) (bytevector-length b)))))
    (bytevector-copy! a 0 out 0 (bytevector-length a))
    (bytevector-copy! b 0 out (bytevector-length a) (bytevector-length b))
    out))

(define (read-request in)
  ;; A line that is no request header is skipped: a stray newline typed into
  ;; the channel must not end the REPL.
  (let ((header (read-line in)))
    (cond
     ((eof-object? header) header)
     ((and (> (string-length header) 1)
           (memv (string-ref header 0) '(#\e #\q #\i #\a #\w #\s #\c #\m))
           (string->number (substring header 1)))
      => (lambda (len)
           (let ((bv (if (zero? len) (make-bytevector 0) (get-bytevector-n in len))))
             (cond ((eof-object? bv) bv)
                   ((eqv? (string-ref header 0) #\a) (cons #\a bv))
                   (else (cons (string-ref header 0) (utf8->string bv)))))))
     (else (read-request in)))))
