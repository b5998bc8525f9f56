;;; sshdist remote REPL loop: the REPL server, a loop for each client of a socket.
;;;
;;; A TCP REPL server is reachable by every local user of the node, so it
;;; serves only clients that first send k<LEN>\n<KEY>, KEY being the line in
;;; its key file (mode 600, in the server's 700 directory).  A client that
;;; does not, within key-timeout seconds, is closed unanswered: no hello.

(define-module (sshdist server)
  #:use-module (rnrs bytevectors)
  #:use-module (ice-9 binary-ports)
  #:use-module (ice-9 rdelim)
  #:use-module (ice-9 threads)
  #:use-module ((sshdist evaluation) #:select (prepare-process))
  #:use-module ((sshdist loop) #:select (sshdist-serve))
  #:export (serve-socket))

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
