;;; The anchor figures: Guile-SSH's own (ssh dist) on the same local nodes.
;;; Usage: guile guile_ssh_anchor.scm USER IDENTITY KNOWN_HOSTS PORT...
;;; Prints one "name value" line per figure, in milliseconds unless the name says
;;; otherwise (guile_ssh_distribute_8_hangs and _calls are counts).

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

;; Eight trivial forms on eight nodes, one form a node in parallel.  Guile-SSH's
;; distribute often hangs on eight nodes here (within the first few calls on fresh
;; nodes, more often on nodes that have just run the 100k-item dist-map), so it gets
;; nodes of its own, made last, and each call a watchdog.  A call that hangs is
;; counted and left behind with its nodes (its thread dies with the script), and the
;; calls go on on eight fresh nodes, at most three times.
(define (distribute-8 eight)
  (call-with-values
      (lambda ()
        (distribute eight (+ 1 2) (+ 1 2) (+ 1 2) (+ 1 2) (+ 1 2) (+ 1 2) (+ 1 2) (+ 1 2)))
    (lambda results
      (unless (equal? results (make-list 8 3))
        (error "distribute gave" results)))))

(define (timed-or-hung thunk seconds)
  "THUNK's time in ms, or #f when it has not returned within SECONDS."
  (let* ((t (now-ms))
         (worker (call-with-new-thread (lambda () (thunk) (- (now-ms) t)))))
    (join-thread worker (+ (current-time) seconds) #f)))

(let round ((hangs 0) (times '()))
  (if (or (= hangs 3) (>= (length times) 20))
      (begin
        (report "guile_ssh_distribute_8_hangs" hangs)
        (report "guile_ssh_distribute_8_calls" (length times))
        (unless (null? times)
          (report "guile_ssh_distribute_8_ms" (median times))))
      (let ((eight (par-map (lambda (port) (make-node (connect port))) (list-head ports 8))))
        (if (not (timed-or-hung (lambda () (distribute-8 eight)) 10))  ; warm
            (round (1+ hangs) times)
            (let calls ((times times))
              (let ((took (and (< (length times) 20)
                               (timed-or-hung (lambda () (distribute-8 eight)) 5))))
                (cond (took (calls (cons took times)))
                      ((< (length times) 20) (round (1+ hangs) times))
                      (else (round hangs times)))))))))
