;;; The anchor figures: Guile-SSH's own (ssh dist) on the same local nodes.
;;; Usage: guile guile_ssh_anchor.scm USER IDENTITY KNOWN_HOSTS PORT...
;;; Prints one "name value" line per figure, in milliseconds.

(use-modules (ssh session) (ssh auth) (ssh key) (ssh dist) (ssh dist node)
             (ice-9 threads) (srfi srfi-1))

(define args (cdr (command-line)))
(define user (list-ref args 0))
(define identity (list-ref args 1))
(define known-hosts (list-ref args 2))
(define ports (map string->number (drop args 3)))

(define (now-ms) (/ (get-internal-real-time) (/ internal-time-units-per-second 1000.0)))

(define (connect port)
  (let ((s (make-session #:host "127.0.0.1" #:port port #:user user
                         #:knownhosts known-hosts #:log-verbosity 'nolog)))
    (unless (eq? (connect! s) 'ok) (error "connect failed" port))
    (unless (eq? (authenticate-server s) 'ok) (error "host key not known" port))
    (unless (eq? (userauth-public-key! s (private-key-from-file identity)) 'success)
      (error "authentication failed" port))
    s))

(define (median xs)
  (let ((v (list->vector (sort xs <))))
    (vector-ref v (quotient (vector-length v) 2))))

(define (report name value)
  (format #t "~a ~,3f~%" name value)
  (force-output))

;; Eight nodes made at once, one thread each, as sshdist's make_nodes does.
(let* ((t0 (now-ms))
       (nodes (par-map (lambda (port) (make-node (connect port))) ports)))
  (report "guile_ssh_make_node_8_ms" (- (now-ms) t0))
  (let ((three (list-head nodes 3))
        (data (iota 100000)))
    (dist-map three (lambda (x) (* x x)) (iota 10))  ; warm
    (report "guile_ssh_dist_map_100k_3nodes_ms"
            (median (map (lambda (i)
                           (let ((t (now-ms)))
                             (dist-map three (lambda (x) (* x x)) data)
                             (- (now-ms) t)))
                         (iota 3)))))
  (let ((node (car nodes)))
    (with-ssh node (+ 1 2))             ; warm
    (report "guile_ssh_with_ssh_rtt_ms"
            (median (map (lambda (i)
                           (let ((t (now-ms)))
                             (with-ssh node (+ 1 2))
                             (- (now-ms) t)))
                         (iota 100))))))
