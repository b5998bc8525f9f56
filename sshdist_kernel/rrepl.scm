;;; sshdist remote REPL loop.
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

(define-module (sshdist rrepl)
  #:use-module (system repl common)
  #:use-module (system base language)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 binary-ports)
  #:use-module (ice-9 rdelim)
  #:use-module (ice-9 history)
  #:use-module (ice-9 threads)
  #:use-module (srfi srfi-4)
  #:export (sshdist-serve main serve-socket attachment-list packed-result eval-forms))

(define (make-sink port)
  ;; The real, binary channel to one client: its port, a lock (the pump
  ;; thread writes too), and whether records wait in its buffer.
  (let ((sink (vector port (make-mutex) #f)))
    (with-mutex sinks-lock (set! sinks (cons sink sinks)))
    sink))

(define sinks '())
(define sinks-lock (make-mutex))

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

;;; Captured descriptors (exec channel only): fd 1 and fd 2 write into pipes
;;; whose read ends only the pump thread and the end-of-form drain read.

(define captures '())                   ; ((read-port tag write-fd fd) ...)
(define capture-lock (make-mutex))
(define capture-sink #f)
(define draining? #f)                   ; set before the pipes are read, cleared after

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

(define null-fd #f)                     ; a private /dev/null, to put back on fd 0

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

(define clients (make-hash-table))
(define clients-lock (make-mutex))
(define client-count 0)

(define (register-client! busy)
  ;; BUSY is a variable that is true while the client's evaluation runs.
  (with-mutex clients-lock
    (set! client-count (1+ client-count))
    (hashv-set! clients client-count (cons (current-thread) busy))
    client-count))

(define (forget-client! id)
  (with-mutex clients-lock (hashv-remove! clients id)))

(define interrupts-asked (make-weak-key-hash-table))  ; busy variable -> #t

(define (ask-interrupt! busy)
  ;; Remembered until the client's next request: a value its code returns after
  ;; this (a (sleep 100) that SIGINT woke early returns 98) is no value.
  (hashq-set! interrupts-asked busy #t))

(define (interrupt-asked? busy)
  (hashq-ref interrupts-asked busy #f))

(define (interrupt-now busy)
  ;; Only an evaluation is interrupted; an idle loop ignores the request.
  (when (variable-ref busy)
    (scm-error 'signal #f "User interrupt" '() '())))

(define (interrupt-client! id)
  (let ((entry (with-mutex clients-lock (hashv-ref clients id))))
    (when entry
      (when (variable-ref (cdr entry)) (ask-interrupt! (cdr entry)))
      (system-async-mark (lambda () (interrupt-now (cdr entry))) (car entry)))))

(define main-busy (make-variable #f))
(define main-thread #f)

(define loop-pid (getpid))

(define (leave-if-forked!)
  ;; Code that forks ((primitive-fork)) and lets the child return into this loop
  ;; would have two processes answer on one channel: the child leaves, silently.
  (unless (= (getpid) loop-pid)
    (primitive-_exit 0)))

(define requests-read 0)                ; the loop's requests so far
(define cancelled-through 0)            ; requests up to this one are not to begin
(define interrupt-wanted #f)            ; the request an in-band interrupt is for
(define own-sigint #f)                  ; the request our last group SIGINT was for
(define interrupted #f)                 ; the request an interrupt was last sent to

(define (on-sigint signum)
  ;; Our own SIGINT can arrive after its request ended: it must not stop the next
  ;; one (a (sleep 2) that returned at once).  A SIGINT we did not send is Ctrl-C.
  (let ((own own-sigint))
    (set! own-sigint #f)
    (when (or (not own) (eqv? own requests-read))
      (set! interrupt-wanted #f)
      (interrupt-now main-busy))))

(define (settle-interrupt!)
  ;; A request that was interrupted ends only once our SIGINT has been handled
  ;; and every wake-up it left for this thread is used up (at most about 0.2 s):
  ;; left over, one would end the next request's (sleep 2) at once.
  (let loop ((n 0))
    (when (and own-sigint (< n 200))
      (usleep 1000)
      (loop (1+ n))))
  (set! own-sigint #f)
  (let loop ((n 0))
    (when (and (< n 5) (positive? (usleep 1000)))  ; woken early: there was one
      (loop (1+ n)))))

(define (interrupt-main!)
  ;; SIGINT for the group, as Ctrl-C, and the same interrupt marked on the loop's
  ;; thread: (system "sleep 1") ignores SIGINT while it waits, so in a loop over
  ;; system only the mark, run when system returns, stops the loop.
  (let ((request requests-read))
    (ask-interrupt! main-busy)
    (set! interrupt-wanted request)
    (set! own-sigint request)
    (set! interrupted request)
    (interrupt-process-group!)
    (system-async-mark
     (lambda ()
       ;; Not if SIGINT did it already, nor once the request has ended.
       (when (and (eqv? interrupt-wanted request) (eqv? requests-read request))
         (set! interrupt-wanted #f)
         (interrupt-now main-busy)))
     main-thread)))

(define (interrupt-process-group!)
  ;; What Ctrl-C in a terminal does: the REPL and every child it runs (a
  ;; (system "sleep 9") waits with SIGINT ignored) get SIGINT.
  (kill 0 SIGINT))

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

(define (syntax-unwrap x)
  (if ((@ (system syntax internal) syntax?) x)
      ((@ (system syntax internal) syntax-expression) x)
      x))

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
                                     (number->string (if remember? (remember! (cadr value)) 0))
                                     "\n" (caddr value) "\n"))
                                   (cdddr value))))
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

(define (flush-printed)
  ;; Everything printed so far, by Guile or by a child, goes out before what
  ;; comes next (a value, the end of a form).
  (let ((out (current-output-port)) (err (current-error-port)))
    (unless (port-closed? out) (force-output out))
    (unless (port-closed? err) (force-output err)))
  (when (and (pair? captures) (printed-pending?))
    (drain-captures! 64)))

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

;;; Rich display and input: what (sshdist jupyter) and the code's input port use.

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

(define history-interface
  ;; Looked up once, not once a form.
  (let ((interface #f))
    (lambda ()
      (unless interface (set! interface (resolve-interface '(value-history))))
      interface)))

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

(define packed-tag (list 'packed))

(define (packed? value)
  (and (pair? value) (eq? (car value) packed-tag)))

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

(define (cancelled-request? busy)
  ;; A request that was waiting behind the running one when an in-band interrupt
  ;; came: the interrupt was meant for it too.
  (and (eq? busy main-busy) (<= requests-read cancelled-through)))

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
    (when (eqv? interrupted requests-read) (settle-interrupt!)))
   ((cancelled-request? busy)
    (send-record out "g" "")
    (send-record out "x" "interrupted\nInterrupted before it began (it waited behind an interrupted request).")
    (when (eqv? interrupted requests-read) (settle-interrupt!))
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
        (hashq-remove! interrupts-asked busy)
        (run-source repl (cdr request) out busy (eqv? (car request) #\e)))
      (lambda (key . args)
        (leave-if-forked!)
        (catch #t flush-printed (lambda _ #f))
        (if (eq? key 'quit)
            (send-record out "x" "quit\nThe REPL was asked to quit; it keeps running.")
            (send-record out "x" (string-append (symbol->string key) "\n"
                                                (error-text key args)))))
      note-error-frame)
    (when (eqv? interrupted requests-read) (settle-interrupt!))
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
  (let* ((out (if (vector? out) out (make-sink out)))
         (next-reply (or next-reply (lambda (ask) (socket-reply in ask))))
         (repl (make-repl (current-language) #f))
         (id (register-client! busy)))
    (repl-option-set! repl 'interp #t)
    ;; The marker lets the client skip whatever the login shell printed first.
    (put-bytevector (vector-ref out 0) (string->utf8 "\x00sshdist-rrepl\x00"))
    (send-record out "h" (string-append (number->string (getpid)) "\n" (version)
                                        "\n" (number->string id)))
    (flush-sink out)
    (when (null? captures) (start-flusher!))
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

;;; The REPL of an exec channel: a pump thread streams what fd 1 and fd 2
;;; receive, flushes records, and reads requests while the loop evaluates (so
;;; an interrupt can arrive in-band, and the end of the input is noticed).

(define request-lock (make-mutex))   ; held by whoever reads requests
(define queued '())                 ; requests the pump read for the loop, in order
(define evaluating? #f)              ; the loop is working on a request

(define (loop-request in)
  ;; The main loop's reader: a request the pump already took, or the next one.
  ;; (No with-mutex: a failure here ends the loop anyway, and this is the hot path.)
  (lock-mutex request-lock)
  (set! evaluating? #f)
  (let ((request (if (pair? queued)
                     (let ((first (car queued))) (set! queued (cdr queued)) first)
                     (read-request in))))
    (set! requests-read (1+ requests-read))
    (set! evaluating? (not (eof-object? request)))
    (unlock-mutex request-lock)
    request))

(define (end-process-group!)
  ;; The client is gone: SIGTERM, then SIGKILL, for every process of the REPL's
  ;; group (what its code started, in the background too), the REPL last, so
  ;; nothing of this REPL outlives its node.  A daemon meant to stay uses setsid.
  (sigaction SIGTERM SIG_IGN)
  (kill 0 SIGTERM)
  (usleep 300000)
  (kill 0 SIGKILL))

(define (abandoned!)
  ;; The client went away while code runs: Ctrl-C first; code that will not stop
  ;; within a second has its process group ended from here.
  (interrupt-main!)
  (let wait ((n 0))
    (when (and evaluating? (< n 50))
      (usleep 20000)
      (wait (1+ n))))
  (when evaluating?
    (end-process-group!)))

(define (pump-requests! in out)
  ;; Called with the request lock held while the loop evaluates; #t when the
  ;; input ended.
  (let ((request (read-request in)))
    ;; A request sent before this one was answered waits its turn; the end of
    ;; the input still reaches the pump (it keeps reading), so nothing outlives it.
    (cond ((eof-object? request) (set! queued (append queued (list request))) #t)
          ((eqv? (car request) #\i)
           (set! cancelled-through (+ requests-read (length queued)))
           (interrupt-main!)
           (send-record out "i" "")
           #f)
          ((eqv? (car request) #\c)
           (set! cancelled-through (+ requests-read (length queued)))
           #f)
          ((eqv? (car request) #\s)
           (pump-reply! request)
           #f)
          (else (set! queued (append queued (list request))) #f))))

(define (pump in out)
  (let loop ()
    (catch #t
      (lambda ()
        (let* ((pipes (map car captures))
               (ended? (and (pair? queued) (eof-object? (car (last-pair queued)))))
               (reads (if (and evaluating? (not ended?)) (cons in pipes) pipes))
               (ready (car (select reads '() '() 0 20000))))
          (when (or (memq (car pipes) ready) (memq (cadr pipes) ready))
            (drain-captures! 16))
          (when (and (memq in ready) evaluating? (try-mutex request-lock))
            (when (dynamic-wind
                    (lambda () #t)
                    ;; Ready again under the lock: the loop may have read
                    ;; what made IN ready while select returned.  (Not
                    ;; char-ready?, which misses the end of a pipe.)
                    (lambda () (and evaluating?
                                    (pair? (car (select (list in) '() '() 0 0)))
                                    (pump-requests! in out)))
                    (lambda () (unlock-mutex request-lock)))
              (abandoned!)))
          (when (vector-ref out 2)
            (flush-sink out))))
      (lambda args (usleep 20000)))
    (loop)))

(define (private-port fd mode)
  ;; A copy of FD that code and children cannot inherit.
  (let ((port (fdopen (close-on-exec! (dup->fdes fd)) mode)))
    (setvbuf port 'block 65536)
    (set-port-encoding! port "ISO-8859-1")
    port))

(define (prepare-process)
  (disable-value-history!)
  (add-hook! before-print-hook print-history-name)
  (set-current-module (resolve-module '(guile-user)))
  ;; (ice-9 rdelim) is loaded already: (read-line) in a cell reads the notebook's input.
  (process-use-modules '(((ice-9 session)) ((ice-9 regex)) ((ice-9 threads)) ((ice-9 rdelim)))))

(define (main)
  "Serve one client on the exec channel's stdin and stdout."
  (let* ((in (private-port 0 "r"))
         (out (make-sink (private-port 1 "w")))
         (null (close-on-exec! (open-fdes "/dev/null" O_RDONLY))))
    (dup2 null 0)
    (set! null-fd null)
    ;; Our own process group, so a Ctrl-C (kill 0 SIGINT) reaches our children
    ;; and nothing else; a session leader already leads its group.
    (catch 'system-error (lambda () (setpgid 0 0)) (lambda _ #f))
    (set! capture-sink out)
    (capture-fd! 1 "o")
    (capture-fd! 2 "e")
    (sigaction SIGINT on-sigint)
    ;; A handler, not SIG_IGN, which children would inherit: a write to a
    ;; client that is gone fails with EPIPE instead of killing the loop.
    (sigaction SIGPIPE (lambda (signum) #f))
    (prepare-process)
    (set! loop-pid (getpid))
    (set! main-thread (current-thread))
    (call-with-new-thread (lambda () (pump in out)))
    (sshdist-serve in out main-busy #:next-request loop-request #:next-reply pumped-reply)
    (end-process-group!)))

;;; A TCP REPL server is reachable by every local user of the node, so it
;;; serves only clients that first send k<LEN>\n<KEY>, KEY being the line in
;;; its key file (mode 600, in the server's 700 directory).  A client that
;;; does not, within key-timeout seconds, is closed unanswered: no hello.

(define key-timeout 5)

(define (read-key key-file)
  ;; The server's key: the first line of KEY-FILE, which only its user can read.
  (let ((line (and (file-exists? key-file)
                   (call-with-input-file key-file read-line))))
    (if (or (not (string? line)) (string-null? line))
        (begin
          (format (current-error-port) "no key in ~a; start the server with node_run_server~%"
                  key-file)
          (exit 1))
        (string->utf8 line))))

(define (same-key? a b)
  ;; Every byte is compared, whatever the first difference: the time taken
  ;; tells a guesser nothing about how much of a guess was right.
  (and (= (bytevector-length a) (bytevector-length b))
       (let loop ((i 0) (diff 0))
         (if (= i (bytevector-length a))
             (zero? diff)
             (loop (1+ i) (logior diff (logxor (bytevector-u8-ref a i)
                                               (bytevector-u8-ref b i))))))))

(define (byte-before port deadline)
  ;; The next byte of PORT, or 'timeout once DEADLINE (internal real time) has
  ;; passed, or 'closed at its end: a client that says nothing must not hold a
  ;; thread for long.
  (let ((left (- deadline (get-internal-real-time))))
    (if (<= left 0)
        'timeout
        (let ((ready (select (list port) '() '()
                             (quotient left internal-time-units-per-second)
                             (quotient (* 1000000 (remainder left internal-time-units-per-second))
                                       internal-time-units-per-second))))
          (if (null? (car ready))
              'timeout
              (let ((byte (get-u8 port)))
                (if (eof-object? byte) 'closed byte)))))))

(define (read-credential port)
  ;; The request k<LEN>\n<KEY>, read within key-timeout seconds: the key as a
  ;; bytevector, or a symbol that says why there is none.
  (let ((deadline (+ (get-internal-real-time)
                     (* key-timeout internal-time-units-per-second))))
    (define (header bytes)
      (let ((byte (byte-before port deadline)))
        (cond ((symbol? byte) byte)
              ((= byte 10) (body (list->string (map integer->char (reverse bytes)))))
              ((< (length bytes) 8) (header (cons byte bytes)))
              (else 'no-key))))
    (define (body text)
      (let ((len (and (> (string-length text) 1)
                      (char=? (string-ref text 0) #\k)
                      (string->number (substring text 1) 10))))
        (if (and (exact-integer? len) (<= 0 len 1024))
            (let ((key (make-bytevector len)))
              (let loop ((i 0))
                (if (= i len)
                    key
                    (let ((byte (byte-before port deadline)))
                      (if (symbol? byte)
                          byte
                          (begin (bytevector-u8-set! key i byte) (loop (1+ i))))))))
            'no-key)))
    (header '())))

(define (admit? client peer key log)
  "Whether CLIENT, a new connection from PEER, sent KEY first; a refusal is one
line in LOG and nothing to the client."
  (let* ((got (catch #t (lambda () (read-credential client)) (lambda args 'closed)))
         (reason (cond ((not (bytevector? got)) got)
                       ((same-key? got key) #f)
                       (else 'wrong-key))))
    (when reason
      (format log "~a refused a client from ~a:~a: ~a~%"
              (strftime "%F %T" (localtime (current-time)))
              (inet-ntop AF_INET (sockaddr:addr peer)) (sockaddr:port peer)
              (case reason
                ((timeout) (format #f "no key within ~a s" key-timeout))
                ((closed) "it closed the connection before sending the key")
                ((no-key) "its first request was not the key (k<LEN>)")
                (else "wrong key")))
      (force-output log))
    (not reason)))

(define* (serve-socket address pid-file #:optional key-file)
  "A REPL server: every client of ADDRESS gets its own loop, in its own
thread, over the same modules.  PID-FILE is written once ADDRESS listens.
With KEY-FILE, a client is served only once it sends the file's key first
(see admit?): a TCP port is open to every local user."
  (let ((server (socket (sockaddr:fam address) SOCK_STREAM 0))
        (server-key (and key-file (read-key key-file)))
        (log (current-error-port)))
    (setsockopt server SOL_SOCKET SO_REUSEADDR 1)
    (catch 'system-error
      (lambda () (bind server address))
      (lambda (key . args)
        (format (current-error-port) "cannot listen on ~a: ~a~%"
                (if (= (sockaddr:fam address) AF_UNIX)
                    (sockaddr:path address)
                    (format #f "127.0.0.1:~a" (sockaddr:port address)))
                (strerror (system-error-errno (cons key args))))
        (exit 1)))
    (listen server 16)
    (call-with-output-file pid-file
      (lambda (port) (display (getpid) port) (newline port)))
    (prepare-process)
    (let loop ()
      (let* ((connection (accept server))
             (client (car connection)))
        (setvbuf client 'block 65536)
        (call-with-new-thread
         (lambda ()
           (when (or (not server-key) (admit? client (cdr connection) server-key log))
             (catch #t
               (lambda () (sshdist-serve client client))
               (lambda args #f)))
           (close-port client)))
        (loop)))))
