;;; How a node starts the loop: from a compiled copy cached on the node when
;;; there is one this user alone could have written, else from its source, as
;;; eval-string (Guile's interpreter: the loop's own code then costs about half
;;; again as much per request).  A start that finds no compiled copy has one
;;; made in the background, for the next REPL; a directory that cannot be made
;;; or is not this user's alone means running from source, nothing else.
;;;
;;; The expression is a procedure, called with the program's source, a hash of
;;; it, the cache directory (#f: the node's $XDG_CACHE_HOME/sshdist, else
;;; ~/.cache/sshdist) and the command that runs this Guile.

(lambda (source key dir guile)
  (define (own? st)
    ;; A compiled file is code this process will run: it must be this user's,
    ;; and nobody else may write to it or to its directory.
    (and st (= (stat:uid st) (getuid)) (zero? (logand (stat:perms st) #o022))))
  (define (cache-dir)
    ;; An absolute directory: DIR (a leading ~/ is the home directory), else the
    ;; XDG one; a relative DIR means no cache (it would land who knows where).
    (let ((xdg (getenv "XDG_CACHE_HOME")) (home (getenv "HOME")))
      (define (home-based? d) (and home (string-prefix? "/" home) d))
      (cond ((and dir (string-prefix? "/" dir)) dir)
            ((and dir (string-prefix? "~/" dir) (home-based? dir))
             (string-append home (substring dir 1)))
            (dir #f)
            ((and xdg (string-prefix? "/" xdg)) (string-append xdg "/sshdist"))
            ((home-based? home) (string-append home "/.cache/sshdist"))
            (else #f))))
  (define (ready dir)
    ;; DIR, made (mode 700, and its missing parents too) if need be; #f unless
    ;; it is a directory of this user's that nobody else can write to.
    (let make ((d dir))
      (unless (or (file-exists? d) (string=? d (dirname d)))
        (make (dirname d))
        (false-if-exception (mkdir d #o700))))
    (let ((st (stat dir #f)))
      (and (own? st) (eq? (stat:type st) 'directory) dir)))
  (define (shell-quote s)
    (string-append "'" (string-join (string-split s #\') "'\\''") "'"))
  (define (compile-command dir file go lock)
    ;; A shell command line: a Guile, in its own session and with nothing of
    ;; ours open, compiles FILE to GO, writes GO's stamp (see load-cached), deletes
    ;; FILE, deletes the copies nobody loaded for 30 days (older versions), and
    ;; deletes LOCK last.
    ;; The program is several modules (define-module forms) in one file, which
    ;; compile-file compiles as one unit.  Guile 3.0 turns a declarative module's
    ;; definitions into local bindings that the rest of the unit is nested in,
    ;; and then looks up the later modules' top-level variables in the first
    ;; module (3.0.8: "Unbound variable" at run time); so the modules are compiled
    ;; as not declarative, as the evaluator runs them (Guile 2.2 has no such thing).
    ;; It leaves the REPL's process group before Guile starts (setsid(1), where
    ;; there is one), and ignores SIGTERM until then: a REPL that ends soon after
    ;; starting stops its group, and a Guile slow to start on a loaded machine was
    ;; killed before its own setsid, leaving the lock for 10 minutes.
    (string-append
     "(trap '' TERM; S=; command -v setsid >/dev/null 2>&1 && S=setsid; exec $S "
     (shell-quote guile) " -q --no-auto-compile -c "
     (shell-quote
      (format #f "(false-if-exception (setsid)) (sigaction SIGTERM SIG_DFL) (umask #o077)
                  (use-modules (system base compile) (ice-9 ftw))
                  (define (not-declarative thunk)
                    (let ((v (module-variable the-root-module 'user-modules-declarative?)))
                      (if v (parameterize (((variable-ref v) #f)) (thunk)) (thunk))))
                  (false-if-exception
                   (begin
                     (not-declarative (lambda () (compile-file ~s #:output-file ~s)))
                     (call-with-output-file ~s
                       (lambda (port)
                         (write (let ((st (stat ~s)))
                                  (list (stat:ino st) (stat:size st)
                                        (stat:mtime st) (stat:mtimensec st)))
                                port)))))
                  (false-if-exception (delete-file ~s))
                  (define (in-dir name) (string-append ~s \"/\" name))
                  (define (unused? name)
                    (and (string-prefix? \"rrepl-\" name)
                         (or (string-suffix? \".go\" name) (string-suffix? \".stamp\" name))
                         (> (- (current-time) (stat:atime (stat (in-dir name))))
                            (* 30 24 3600))))
                  (false-if-exception
                   (for-each (lambda (name) (delete-file (in-dir name)))
                             (or (scandir ~s unused?) '())))
                  (delete-file ~s)"
              file go (string-append go ".stamp") go file dir dir lock))
     ") </dev/null >/dev/null 2>&1 &"))
  (define (compile-later dir go)
    ;; One Guile at a time compiles: a lock file says one is at work (unless
    ;; it is 10 minutes old: that compiler died).  It runs in its own session,
    ;; since a REPL's end stops its process group, and compile-file writes the
    ;; .go under a temporary name (mode 600, from the source's) before renaming it.
    (let* ((lock (string-append go ".lock"))
           (st (stat lock #f)))
      (when (and st (> (- (current-time) (stat:mtime st)) 600))
        (false-if-exception (delete-file lock)))
      (let ((fd (false-if-exception
                 (open-fdes lock (logior O_WRONLY O_CREAT O_EXCL) #o600))))
        (when fd
          (close-fdes fd)
          (let ((file #f))
            (unless (false-if-exception
                     (let ((port (mkstemp! (string-append dir "/source-XXXXXX"))))
                       (set! file (port-filename port))
                       (set-port-encoding! port "UTF-8")
                       (display source port)
                       (close-port port)
                       (zero? (system (compile-command dir file go lock)))))
              ;; A full disk, or no shell to start it: the next REPL tries again.
              (when file (false-if-exception (delete-file file)))
              (false-if-exception (delete-file lock))))))))
  (define (stamped? go st)
    ;; GO is as its compile left it: the stamp written then (inode, size and
    ;; modification time, in a file of this user's alone) still matches.  A copy
    ;; changed since (a program writing into it, a copy over it) is not loaded:
    ;; damaged code would break every REPL started from it.
    (let* ((stamp (string-append go ".stamp"))
           (sst (false-if-exception (lstat stamp))))
      (and sst (own? sst) (eq? (stat:type sst) 'regular)
           (equal? (false-if-exception (call-with-input-file stamp read))
                   (list (stat:ino st) (stat:size st) (stat:mtime st) (stat:mtimensec st))))))
  (define (being-made? go)
    ;; A compile holds the lock (one 10 minutes old is a dead compiler's).
    (let ((st (stat (string-append go ".lock") #f)))
      (and st (< (- (current-time) (stat:mtime st)) 600))))
  (define (forget dir go)
    (false-if-exception (delete-file go))
    (false-if-exception (delete-file (string-append go ".stamp")))
    (compile-later dir go)
    #f)
  (define (load-cached)
    (let* ((where (cache-dir))
           (dir (and where (ready where)))
           (go (and dir (string-append dir "/rrepl-" key "-" (version) "-" %host-type ".go")))
           (st (and go (false-if-exception (lstat go)))))
      (cond
       ((not go) #f)
       ((not st) (compile-later dir go) #f)
       ((not (and (own? st) (eq? (stat:type st) 'regular))) #f)
       ((being-made? go) #f)                            ; its stamp may be due
       ((not (stamped? go st)) (forget dir go))
       ((catch #t
          (lambda ()
            (load-compiled go)
            ;; Last used now (the access time: the stamp keeps the modification
            ;; time), for the 30 days of compile-command's clean-up.
            (false-if-exception
             (utime go (current-time) (stat:mtime st) 0 (stat:mtimensec st)))
            #t)
          (lambda _ #f)))
       ;; A copy Guile will not load (a different build of the same version) is
       ;; made again.
       (else (forget dir go)))))
  (unless (catch #t load-cached (lambda _ #f))
    (eval-string source)))
