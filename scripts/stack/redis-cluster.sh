# The Redis Cluster of scripts/stack.sh (sourced by it, never run alone).
# ---------------------------------------------------------------- redis cluster

# The write side scaled out (docs/design.md §11): the same apt redis-server, one process per port,
# each with its own dir (nodes.conf, AOF) and pid file "redis-cluster-<port>". Shards are independent,
# so a slot without a master must not stop the others: cluster-require-full-coverage no (the default
# yes answers CLUSTERDOWN for every slot until the failover ends). `redis-cli --cluster
# create` assigns the first half of the ports as masters and the rest as their replicas; after a
# failover the roles move, which is why nothing here assumes them.

# Never fails (set -e, pipefail): a node that does not answer gives empty output.
rc_cli() { timeout 5 redis-cli -h "$HOST" -p "$1" "${@:2}" 2>/dev/null || true; }
rc_info() { rc_cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"; }

start_redis_cluster_node() { # start_redis_cluster_node <port>
  local port="$1" name="redis-cluster-$1" dir="$STACK_DIR/redis-cluster/$1"
  command -v redis-server >/dev/null || die "redis-server not found. Install it: apt-get install redis-server"
  mkdir -p "$dir"
  rm -f "$RUN_DIR/$name.server.pid"
  redis-server --bind "$HOST" --port "$port" --dir "$dir" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout "$REDIS_CLUSTER_NODE_TIMEOUT" \
    --cluster-require-full-coverage no \
    --appendonly yes --appendfsync everysec --appendfilename appendonly.aof \
    --maxmemory "$REDIS_CLUSTER_MAXMEMORY" --maxmemory-policy noeviction \
    --daemonize yes --pidfile "$RUN_DIR/$name.server.pid" --logfile "$(log_file_of "$name")" \
    --save "" --protected-mode yes --maxclients 10000 || return 1
  local i
  for i in $(seq 1 50); do [[ -s "$RUN_DIR/$name.server.pid" ]] && break; sleep 0.1; done
  record_pid "$name" "$(tr -dc '0-9' <"$RUN_DIR/$name.server.pid")"
}

# rc_wait_ok <seconds>: every node reports cluster_state:ok and the same number of known nodes, and
# half of them are replicas whose link to their master is up. cluster_state:ok comes before the
# replicas have their first copy, and a replica that never synced refuses to take over: a master
# killed in that window would leave its slots without an owner.
rc_wait_ok() {
  local budget="$1" start=$SECONDS p ok synced n="${#REDIS_CLUSTER_PORTS[@]}"
  while ((SECONDS - start < budget)); do
    ok=1 synced=0
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do
      [[ "$(rc_info "$p" cluster_state)" == ok && "$(rc_info "$p" cluster_known_nodes)" == "$n" ]] || { ok=0; break; }
      rc_cli "$p" info replication | tr -d '\r' | grep -q '^master_link_status:up' && synced=$((synced + 1))
    done
    ((ok && synced == n / 2)) && return 0
    sleep 0.5
  done
  return 1
}

ensure_redis_cluster() {
  local p name pid t0=$SECONDS started=() fresh=0 configured=0 n="${#REDIS_CLUSTER_PORTS[@]}"
  ((n >= 6 && n % 2 == 0)) || die "FLASHSALE_REDIS_CLUSTER_PORTS: an even number of ports, at least 6 (3 masters + 3 replicas); got ${REDIS_CLUSTER_PORTS[*]}"
  command -v redis-cli >/dev/null || die "redis-cli not found. Install it: apt-get install redis-tools"
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    name="redis-cluster-$p"
    if owned_pid "$name" >/dev/null; then continue; fi
    rm -f "$(pid_file "$name")"
    if port_open "$p"; then
      [[ "$(rc_cli "$p" ping)" == PONG && -n "$(rc_info "$p" cluster_state)" ]] \
        || { info "something listens on $HOST:$p but is not a cluster-enabled Redis; stop it or choose other ports (FLASHSALE_REDIS_CLUSTER_BASE_PORT)"; return 1; }
      continue # a node of someone else's cluster on these ports: used as it is, never stopped
    fi
    [[ -n "${STARTED_MARKS:-}" ]] && touch "$STARTED_MARKS/$name"
    start_redis_cluster_node "$p" 9>&- || { info "$name failed to start (log: $(log_file_of "$name"))"; return 1; }
    started+=("$p")
  done
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    local i
    for ((i = 0; i < 100; i++)); do [[ "$(rc_cli "$p" ping)" == PONG ]] && break; sleep 0.2; done
    [[ "$(rc_cli "$p" ping)" == PONG ]] || { info "redis-cluster node $p does not answer"; tail_log "redis-cluster-$p"; return 1; }
    if [[ "$(rc_info "$p" cluster_known_nodes)" == 1 && "$(rc_info "$p" cluster_slots_assigned)" == 0 ]]; then
      fresh=$((fresh + 1))
    else
      configured=$((configured + 1))
    fi
  done
  if ((fresh == n)); then
    info "creating the cluster: $((n / 2)) masters, $((n / 2)) replicas on ports ${REDIS_CLUSTER_PORTS[*]}"
    local nodes=()
    for p in "${REDIS_CLUSTER_PORTS[@]}"; do nodes+=("$HOST:$p"); done
    if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$LOG_DIR/redis-cluster-create.log" 2>&1; then
      cat "$LOG_DIR/redis-cluster-create.log" >&2
      # Nodes half-way into a cluster would make the next `up` refuse; start them clean next time.
      for p in "${started[@]}"; do stop_one "redis-cluster-$p" >&2; rm -rf "${STACK_DIR:?}/redis-cluster/$p"; done
      return 1
    fi
  elif ((fresh > 0)); then
    # Some nodes remember a cluster (nodes.conf) and some do not: joining them by hand is an
    # operator's decision, not something `up` should guess.
    info "redis-cluster: $configured node(s) belong to a cluster and $fresh are empty; run 'bash scripts/stack.sh down redis-cluster' and remove $STACK_DIR/redis-cluster to start over"
    return 1
  fi
  # Nodes restarted from their nodes.conf re-form the cluster by themselves; wait for it either way.
  if ! rc_wait_ok 90; then
    info "redis-cluster did not reach cluster_state:ok within 90s"
    rc_cli "${REDIS_CLUSTER_PORTS[0]}" cluster nodes >&2 || true
    return 1
  fi
  if ((${#started[@]})); then
    say "redis-cluster: started ${#started[@]} node(s) in $((SECONDS - t0))s, cluster_state:ok  $(endpoint_of redis-cluster)"
  else
    say "redis-cluster: running, cluster_state:ok  $(endpoint_of redis-cluster)"
  fi
}

stop_redis_cluster() {
  local p
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do stop_one "redis-cluster-$p"; done
}

status_redis_cluster() {
  local p pid role state any=0
  state="$(rc_info "${REDIS_CLUSTER_PORTS[0]}" cluster_state)"
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do port_open "$p" && any=1; done
  ((any)) || { say "redis-cluster: stopped (ports ${REDIS_CLUSTER_PORTS[*]})"; return 0; }
  for p in "${REDIS_CLUSTER_PORTS[@]}"; do
    role="$(rc_cli "$p" role | head -n1)"
    if pid="$(owned_pid "redis-cluster-$p")"; then
      say "redis-cluster-$p: running (pid $pid, ${role:-not answering}) on $HOST:$p"
    elif port_open "$p"; then
      say "redis-cluster-$p: answering on $HOST:$p (${role:-?}), not started by this stack"
    else
      say "redis-cluster-$p: stopped"
    fi
  done
  if [[ -n "$state" ]]; then say "redis-cluster: cluster_state:$state  $(endpoint_of redis-cluster)"; else say "redis-cluster: stopped"; fi
}

