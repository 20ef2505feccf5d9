# The three-broker Kafka of scripts/stack.sh (sourced by it, never run alone): production's shape,
# for the broker-failure test and anyone who wants replication exercised (docs/stack.md).
# ---------------------------------------------------------------- kafka cluster

# Three combined KRaft nodes (broker + controller each, so any one may die: the quorum of three
# controllers survives one loss and so do partitions with RF 3 and min.insync.replicas 2), the same
# cached jars as the single node, each with its own dir and pid file "kafka-cluster-<n>", all
# formatted with one cluster id (kept in the stack dir, so a node restarted alone rejoins).
# Topics default to RF 3, min ISR 2, unclean leader election off (write_kafka_config).
#
# Failure detection is tighter than Kafka's defaults so that a killed leader is replaced in seconds
# (the relay's pause after a kill -9 is the controller's election, if the controller died, plus the
# broker's session timeout, plus ~2 s for the relay's producer to find the new leaders and end the
# transaction that the kill broke). Measured 2026-12-07 on the quiet 2-core machine: a kill of a node
# that was both the busiest leader and the active controller took 3.8 s to elect a new controller
# (fetch timeout 2 s, then a split vote), 4.0 s of session timeout that the new controller starts
# afresh, and 1.9 s in the relay: 9.8 s, against the 10 s the broker-failure test allows. So:
#   broker.session.timeout.ms 3000 (default 9000): a broker that stops heartbeating is fenced, its
#     partitions get new leaders from the ISR;
#   broker.heartbeat.interval.ms 750 (default 2000): four heartbeats per session, so a broker JVM
#     starved of CPU for a moment is not fenced for it;
#   controller.quorum.fetch.timeout.ms 1000 (default 2000): a controller follower that heard nothing
#     from the active controller for 1 s stands for election;
#   controller.quorum.election.timeout.ms 500 and election.backoff.max.ms 500 (defaults 1000): a
#     split vote is retried sooner.
# With Kafka's defaults (9 s session, 2 s fetch timeout) the same arithmetic gives ~13-16 s (not measured).
# The internal topics get 12 partitions instead of 50 each (servers.sh, for every node): a broker
# restarted after kill -9 recovers and re-syncs every replica it holds, and 300 replicas per node
# made that take over a minute on a loaded 2-core machine.
KAFKA_CLUSTER_NODES=(1 2 3)
KAFKA_CLUSTER_FAILURE_DETECTION=$'broker.session.timeout.ms=3000\nbroker.heartbeat.interval.ms=750\ncontroller.quorum.fetch.timeout.ms=1000\ncontroller.quorum.election.timeout.ms=500\ncontroller.quorum.election.backoff.max.ms=500'

kc_port() { echo $((KAFKA_CLUSTER_BASE_PORT + $1 - 1)); }            # broker listener of node n
kc_controller_port() { echo $((KAFKA_CLUSTER_BASE_PORT + $1 + 2)); } # its controller listener
kc_voters() { local n out=(); for n in "${KAFKA_CLUSTER_NODES[@]}"; do out+=("$n@$HOST:$(kc_controller_port "$n")"); done; (IFS=,; echo "${out[*]}"); }
kc_bootstrap() { local n out=(); for n in "${KAFKA_CLUSTER_NODES[@]}"; do out+=("$HOST:$(kc_port "$n")"); done; (IFS=,; echo "${out[*]}"); }

start_kafka_cluster_node() { # start_kafka_cluster_node <n> <cluster id>
  local n="$1" dir="$STACK_DIR/kafka-cluster/$1"
  KAFKA_EXTRA_CONFIG="$KAFKA_CLUSTER_FAILURE_DETECTION" \
    write_kafka_config "$dir" "$n" "$(kc_port "$n")" "$(kc_voters)" "$(kc_controller_port "$n")" 3 2
  format_kafka_storage "kafka-cluster-$n" "$dir" "$2"
  launch_kafka "kafka-cluster-$n" "$dir" "$KAFKA_CLUSTER_HEAP"
}

# Brokers that answer an ApiVersions request, among those the metadata lists (a killed one is listed
# until its session times out, with "-> ERROR" instead of its versions).
kc_live_brokers() {
  kafka_tool kafka.admin.BrokerApiVersionsCommand --bootstrap-server "$(kc_bootstrap)" 2>/dev/null | grep -c ' (id: [0-9]* rack: [^)]*) -> ($' || true
}

ensure_kafka_cluster() {
  local n name pid started=() t0=$SECONDS cluster_id id_file="$STACK_DIR/kafka-cluster/cluster.id"
  install_kafka
  mkdir -p "$STACK_DIR/kafka-cluster"
  [[ -s "$id_file" ]] || kafka_tool kafka.tools.StorageTool random-uuid >"$id_file"
  cluster_id="$(tr -dc 'A-Za-z0-9_-' <"$id_file")"
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    name="kafka-cluster-$n"
    if owned_pid "$name" >/dev/null; then continue; fi # running: left alone
    rm -f "$(pid_file "$name")"
    if port_open "$(kc_port "$n")"; then
      info "something listens on $HOST:$(kc_port "$n") (node $n of the Kafka cluster) but this stack did not start it; stop it or choose other ports (FLASHSALE_KAFKA_CLUSTER_BASE_PORT)"
      return 1
    fi
    [[ -n "${STARTED_MARKS:-}" ]] && touch "$STARTED_MARKS/$name"
    start_kafka_cluster_node "$n" "$cluster_id" 9>&- || { info "$name failed to start (log: $(log_file_of "$name"))"; return 1; }
    started+=("$n")
  done
  # Ready when every broker is registered and unfenced: then every partition can have RF 3.
  local live=0
  while ((SECONDS - t0 < 150)); do
    for n in "${KAFKA_CLUSTER_NODES[@]}"; do
      pid_running "$(owned_pid "kafka-cluster-$n" || echo 0)" && continue
      info "kafka-cluster-$n exited during start-up"; tail_log "kafka-cluster-$n"; return 1
    done
    live="$(kc_live_brokers)"
    ((live == ${#KAFKA_CLUSTER_NODES[@]})) && break
    sleep 1
  done
  if ((live != ${#KAFKA_CLUSTER_NODES[@]})); then
    info "kafka-cluster: $live of ${#KAFKA_CLUSTER_NODES[@]} brokers alive after $((SECONDS - t0))s"
    return 1
  fi
  if ((${#started[@]})); then
    say "kafka-cluster: started node(s) ${started[*]} in $((SECONDS - t0))s, ${#KAFKA_CLUSTER_NODES[@]} brokers alive  $(endpoint_of kafka-cluster)"
  else
    say "kafka-cluster: running, ${#KAFKA_CLUSTER_NODES[@]} brokers alive  $(endpoint_of kafka-cluster)"
  fi
}

# All three are told to stop at once: one by one, the last broker's controlled shutdown would wait
# for a controller quorum that had already gone (then SIGKILL after 30 s).
stop_kafka_cluster() {
  local n pids=() pid i
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    if pid="$(owned_pid "kafka-cluster-$n")"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$n:$pid"); else
      rm -f "$(pid_file "kafka-cluster-$n")"; say "kafka-cluster-$n: not running"; fi
  done
  for entry in "${pids[@]}"; do
    n="${entry%%:*}" pid="${entry#*:}"
    for ((i = 0; i < 300; i++)); do pid_running "$pid" || break; sleep 0.1; done
    if pid_running "$pid"; then info "kafka-cluster-$n (pid $pid) still running after 30s; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
    rm -f "$(pid_file "kafka-cluster-$n")"
    say "kafka-cluster-$n: stopped (pid $pid)"
  done
}

status_kafka_cluster() {
  local n pid rss
  for n in "${KAFKA_CLUSTER_NODES[@]}"; do
    if pid="$(owned_pid "kafka-cluster-$n")"; then
      rss="$(ps -o rss= -p "$pid" 2>/dev/null | tr -d ' ')"
      say "kafka-cluster-$n: running (pid $pid, rss $((${rss:-0} / 1024)) MiB) on $HOST:$(kc_port "$n") (controller $(kc_controller_port "$n"))"
    elif port_open "$(kc_port "$n")"; then
      say "kafka-cluster-$n: answering on $HOST:$(kc_port "$n"), not started by this stack"
    else
      say "kafka-cluster-$n: stopped"
    fi
  done
}
