;;; sshdist remote REPL loop: (sshdist rrepl), the loop of an exec channel, and
;;; the names the client's requests call.
;;;
;;; The loop is made of modules of one job each, as Guile's own REPL is, each
;;; importing only modules below it:
;;;   (sshdist framing)     requests and records; the protocol comment is there
;;;   (sshdist packing)     packed lists: attachments in, b records out
;;;   (sshdist arglists)    the argument names of procedures defined at the REPL
;;;   (sshdist errors)      an error's text, in Guile's REPL's words
;;;   (sshdist interrupts)  interrupts, and the clients they are for
;;;   (sshdist capture)     what code prints (fd 1 and fd 2 too), as o and e records
;;;   (sshdist display)     rich displays, as d records
;;;   (sshdist input)       the input of code that reads, as r records and s requests
;;;   (sshdist evaluation)  a request's source, form by form
;;;   (sshdist loop)        one client's loop: requests in, records out
;;;   (sshdist pump)        an exec channel's pump thread
;;;   (sshdist server)      a REPL server: a loop for each client of a socket
;;;   (sshdist rrepl)       this module
;;;   (sshdist jupyter)     the rich display API of code (jupyter.scm)
;;; The client sends them as one text, each module before those that use it
;;; (sshdist_kernel/guile.py), and a node compiles that text into one cached .go
;;; (loader.scm): nothing is installed on the node.  A module never set!s another's
;;; variable (compiled, a module's own unassigned variables may be inlined): each
;;; exports procedures that do.
;;;
;;; This module's namespace holds every other one's exports, so that
;;; (@@ (sshdist rrepl) NAME) still reaches them, as before the loop was split.

(define-module (sshdist rrepl)
  #:use-module (ice-9 threads)
  #:use-module (sshdist framing)
  #:use-module (sshdist packing)
  #:use-module (sshdist arglists)
  #:use-module (sshdist errors)
  #:use-module (sshdist interrupts)
  #:use-module (sshdist capture)
  #:use-module (sshdist display)
  #:use-module (sshdist input)
  #:use-module (sshdist evaluation)
  #:use-module (sshdist loop)
  #:use-module (sshdist pump)
  #:use-module (sshdist server)
  #:export (main)
  #:re-export (sshdist-serve serve-socket attachment-list packed-result eval-forms))

(define (private-port fd mode)
  ;; A copy of FD that code and children cannot inherit.
  (let ((port (fdopen (close-on-exec! (dup->fdes fd)) mode)))
    (setvbuf port 'block 65536)
    (set-port-encoding! port "ISO-8859-1")
    port))

(define (main)
  "Serve one client on the exec channel's stdin and stdout."
  (let* ((in (private-port 0 "r"))
         (out (make-sink (private-port 1 "w"))))
    (capture-standard-fds! out)
    ;; Our own process group, so a Ctrl-C (kill 0 SIGINT) reaches our children
    ;; and nothing else; a session leader already leads its group.
    (catch 'system-error (lambda () (setpgid 0 0)) (lambda _ #f))
    (sigaction SIGINT on-sigint)
    ;; A handler, not SIG_IGN, which children would inherit: a write to a
    ;; client that is gone fails with EPIPE instead of killing the loop.
    (sigaction SIGPIPE (lambda (signum) #f))
    (prepare-process)
    (claim-main-loop!)
    (call-with-new-thread (lambda () (pump in out)))
    (sshdist-serve in out main-busy #:next-request loop-request #:next-reply pumped-reply)
    (end-process-group!)))
