# Helpers of scripts/stack.sh (sourced by it, never run alone): messages, pid files, users,
# downloads into the cache dir, readiness probes.
# ---------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }
info() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] error: %s\n' "$*" >&2; exit 1; }

canonical() {
  case "$1" in
    redis) echo redis ;;
    pg | postgres | postgresql) echo postgres ;;
    kafka) echo kafka ;;
    es | elastic | elasticsearch) echo elasticsearch ;;
    redis-cluster | cluster) echo redis-cluster ;;
    kafka-cluster) echo kafka-cluster ;;
    prometheus | prom) echo prometheus ;;
    *) die "unknown server '$1' (known: ${ALL_SERVERS[*]} redis-cluster kafka-cluster prometheus; aliases pg, es, prom)" ;;
  esac
}

port_of() {
  case "$1" in
    redis) echo "$REDIS_PORT" ;; postgres) echo "$PG_PORT" ;;
    kafka) echo "$KAFKA_PORT" ;; elasticsearch) echo "$ES_PORT" ;;
    redis-cluster) echo "${REDIS_CLUSTER_PORTS[0]}" ;;
    kafka-cluster) kc_port 1 ;;
    prometheus) echo "$PROM_PORT" ;;
    redis-cluster-*) echo "${1#redis-cluster-}" ;; # one node of it
  esac
}

endpoint_of() {
  case "$1" in
    redis) echo "REDIS_URL=redis://$HOST:$REDIS_PORT" ;;
    postgres) echo "DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@$HOST:$PG_PORT/$PG_DB" ;;
    kafka) echo "KAFKA_BROKERS=$HOST:$KAFKA_PORT" ;;
    elasticsearch) echo "ELASTICSEARCH_URL=http://$HOST:$ES_PORT" ;;
    prometheus) echo "PROMETHEUS_URL=http://$HOST:$PROM_PORT" ;;
    kafka-cluster) echo "KAFKA_BROKERS=$(kc_bootstrap)" ;;
    redis-cluster) echo "REDIS_CLUSTER_NODES=$(printf "$HOST:%s," "${REDIS_CLUSTER_PORTS[@]}" | sed 's/,$//')" ;;
  esac
}

log_file_of() {
  case "$1" in
    elasticsearch) echo "$STACK_DIR/elasticsearch/logs/flashsale.log" ;;
    *) echo "$LOG_DIR/$1.log" ;;
  esac
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# A pid file names a process this stack started: "<pid> <start time>". It only counts while
# that very process lives (same pid and same start time), so a recycled pid is never signalled.
pid_file() { echo "$RUN_DIR/$1.pid"; }
proc_start() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }
proc_state() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $1}'; }
# A zombie (dead, not yet reaped: a daemon's parent is init, which may reap a second or more later)
# counts as stopped: its ports are closed. Counting it made `up` skip a killed node's restart, and
# `down` wait for every node's reaping.
pid_running() { kill -0 "$1" 2>/dev/null && [[ "$(proc_state "$1")" != Z ]]; }
record_pid() { # record_pid <name> <pid>
  local st
  st="$(proc_start "$2")"
  [[ -n "$st" ]] || return 1
  echo "$2 $st" >"$(pid_file "$1")"
}
owned_pid() {
  local f pid st
  f="$(pid_file "$1")"
  [[ -s "$f" ]] || return 1
  read -r pid st <"$f" || true
  [[ "$pid" =~ ^[0-9]+$ && -n "$st" ]] || return 1
  pid_running "$pid" || return 1
  [[ "$(proc_start "$pid")" == "$st" ]] || return 1
  echo "$pid"
}

# Run a command as another OS user (root only); as a normal user, run it as yourself.
as_user() {
  local user="$1"; shift
  if [[ $IS_ROOT == 1 && "$user" != root ]]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

# Can `user` read `path` (every parent directory must be traversable)?
user_can_read() {
  local user="$1" path="$2"
  [[ $IS_ROOT == 1 ]] || { [[ -r "$path" ]]; return; }
  runuser -u "$user" -- test -r "$path" 2>/dev/null
}

tail_log() {
  local f
  f="$(log_file_of "$1")"
  if [[ -f "$f" ]]; then
    printf '[stack] --- last lines of %s ---\n' "$f" >&2
    tail -n 30 "$f" >&2 || true
  fi
}

# ---------------------------------------------------------------- prerequisites

find_java_home() {
  local java
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    java="$JAVA_HOME/bin/java"
  else
    java="$(command -v java || true)"
    [[ -n "$java" ]] || die "Java 17 or newer is needed for Kafka and Elasticsearch but 'java' is not on PATH. Install it: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)."
    java="$(readlink -f "$java")"
  fi
  local major
  major="$("$java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n1)"
  [[ -n "$major" && "$major" -ge 17 ]] || die "Java 17 or newer is needed (found: $("$java" -version 2>&1 | head -n1)). Install openjdk-17-jre-headless or set JAVA_HOME."
  dirname "$(dirname "$java")"
}

need_maven() {
  command -v mvn >/dev/null || die "Maven is needed once to download $1 from Maven Central into $CACHE_DIR (later runs use the cache). Install it: apt-get install maven."
}

find_pg_bin() {
  local d
  for d in "${FLASHSALE_PG_BIN:-}" /usr/lib/postgresql/15/bin "$(pg_config --bindir 2>/dev/null || true)"; do
    [[ -n "$d" && -x "$d/initdb" && -x "$d/postgres" ]] && { echo "$d"; return; }
  done
  die "PostgreSQL 15 server binaries not found (looked in /usr/lib/postgresql/15/bin). Install them: apt-get install postgresql-15 (or set FLASHSALE_PG_BIN)."
}

# Maven: one tiny pom in the cache dir, a local repository inside the cache dir, pinned plugin.
mvn_fetch() { # mvn_fetch <plugin:goal> <args...>
  local work="$CACHE_DIR/maven"
  mkdir -p "$work"
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.flashsale</groupId><artifactId>stack-downloads</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- only for the command-line tools (TopicCommand); everything they need is already above -->
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions><exclusion><groupId>*</groupId><artifactId>*</artifactId></exclusion></exclusions></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>ch.qos.reload4j</groupId><artifactId>reload4j</artifactId><version>$RELOAD4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  local log="$work/mvn-$1.log"
  log="${log//[:]/_}"
  if ! (cd "$work" && mvn -B -ntp -Dstyle.color=never -Dmaven.repo.local="$CACHE_DIR/m2" "$@" >"$log" 2>&1); then
    tail -n 40 "$log" >&2
    return 1
  fi
}

# Downloads into the shared cache are serialized across parallel jobs and concurrent `up`s of
# other clones: take the lock, then look again.
cache_lock() { # cache_lock <name>
  mkdir -p "$CACHE_DIR"
  exec 8>"$CACHE_DIR/.lock-$1"
  flock -w 900 8 || die "timed out waiting for $CACHE_DIR/.lock-$1"
}
cache_unlock() { flock -u 8 2>/dev/null || true; exec 8>&-; }

kafka_installed() { [[ -f "$KAFKA_LIBS/.complete" && -f "$KAFKA_LIBS/kafka-tools-$KAFKA_VERSION.jar" ]]; }
install_kafka() {
  kafka_installed && return 0
  cache_lock maven
  if kafka_installed; then cache_unlock; return 0; fi
  need_maven "Kafka $KAFKA_VERSION"
  info "downloading Kafka $KAFKA_VERSION jars from Maven Central (once) ..."
  rm -rf "$KAFKA_LIBS.tmp"
  mvn_fetch "$MVN_DEPENDENCY_PLUGIN:copy-dependencies" -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" \
    || die "Maven could not download Kafka (see the output above)."
  ls "$KAFKA_LIBS.tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
  touch "$KAFKA_LIBS.tmp/.complete"
  rm -rf "$KAFKA_LIBS" && mkdir -p "$(dirname "$KAFKA_LIBS")" && mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
  cache_unlock
}

install_elasticsearch() {
  [[ -f "$ES_DIST/.complete" ]] && return 0
  cache_lock maven
  if [[ -f "$ES_DIST/.complete" ]]; then cache_unlock; return 0; fi
  need_maven "Elasticsearch $ES_VERSION"
  info "downloading Elasticsearch $ES_VERSION (integ-test-zip, ~100 MB) from Maven Central (once) ..."
  local dl="$CACHE_DIR/downloads"
  mkdir -p "$dl"
  mvn_fetch "$MVN_DEPENDENCY_PLUGIN:copy" \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" -DoutputDirectory="$dl" \
    || die "Maven could not download Elasticsearch (see the output above)."
  rm -rf "$ES_DIST.tmp" && mkdir -p "$ES_DIST.tmp"
  if command -v unzip >/dev/null; then
    unzip -q "$dl/elasticsearch-$ES_VERSION.zip" -d "$ES_DIST.tmp"
  else
    (cd "$ES_DIST.tmp" && "$(find_java_home)/bin/jar" xf "$dl/elasticsearch-$ES_VERSION.zip")
    chmod -R a+x "$ES_DIST.tmp/elasticsearch-$ES_VERSION/bin"
  fi
  # Unpacked now: neither the copy nor Maven's (~100 MB each) is needed any more.
  rm -f "$dl/elasticsearch-$ES_VERSION.zip"
  rm -rf "$CACHE_DIR/m2/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION"
  chmod -R a+rX "$ES_DIST.tmp"
  touch "$ES_DIST.tmp/elasticsearch-$ES_VERSION/.complete"
  rm -rf "$ES_DIST" && mv "$ES_DIST.tmp/elasticsearch-$ES_VERSION" "$ES_DIST" && rm -rf "$ES_DIST.tmp"
  cache_unlock
}

install_k6() {
  [[ -x "$K6_BIN" ]] && return 0
  command -v go >/dev/null || install_go || { info "k6 skipped: Go is needed to build it. Only load tests need k6."; return 1; }
  cache_lock k6
  if [[ -x "$K6_BIN" ]]; then cache_unlock; return 0; fi
  info "building k6 $K6_VERSION with go install (once, takes a few minutes) ..."
  mkdir -p "$(dirname "$K6_BIN")" "$LOG_DIR"
  if GOBIN="$(dirname "$K6_BIN")" GOFLAGS=-buildvcs=false go install "go.k6.io/k6@$K6_VERSION" >"$LOG_DIR/k6-build.log" 2>&1; then
    cache_unlock
    return 0
  fi
  cache_unlock
  tail -n 20 "$LOG_DIR/k6-build.log" >&2
  info "k6 build failed (log: $LOG_DIR/k6-build.log)"
  return 1
}

# ---------------------------------------------------------------- probes

probe() {
  case "$1" in
    redis)
      if command -v redis-cli >/dev/null; then
        [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
      else
        local reply
        exec 4<>"/dev/tcp/$HOST/$REDIS_PORT" || return 1
        printf 'PING\r\n' >&4 && IFS= read -r -t 2 reply <&4
        exec 4>&-
        [[ "$reply" == $'+PONG\r' ]]
      fi
      ;;
    postgres)
      [[ "$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=3 "$(find_pg_bin)/psql" -X -q -h "$HOST" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -tAc 'SELECT 1' 2>/dev/null)" == 1 ]]
      ;;
    kafka)
      # A metadata round trip through the Kafka admin client (kafka-topics.sh --list).
      port_open "$KAFKA_PORT" || return 1
      install_kafka >&2
      kafka_tool org.apache.kafka.tools.TopicCommand --list --bootstrap-server "$HOST:$KAFKA_PORT" >/dev/null 2>&1
      ;;
    prometheus)
      curl -fsS -m 3 "http://$HOST:$PROM_PORT/-/ready" >/dev/null 2>&1
      ;;
    elasticsearch)
      curl -fsS -m 5 "http://$HOST:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=3s" 2>/dev/null | grep -q '"status":"\(yellow\|green\)"'
      ;;
  esac
}

# kafka_tool <main class> <args...>: a Kafka command-line tool from the cached jars.
kafka_tool() {
  local props="$CACHE_DIR/kafka-$KAFKA_VERSION/tools-log4j.properties"
  [[ -f "$props" ]] || printf '%s\n' 'log4j.rootLogger=ERROR, stderr' 'log4j.appender.stderr=org.apache.log4j.ConsoleAppender' \
    'log4j.appender.stderr.Target=System.err' 'log4j.appender.stderr.layout=org.apache.log4j.PatternLayout' \
    'log4j.appender.stderr.layout.ConversionPattern=%p %m (%c)%n' >"$props"
  timeout 60 "$(find_java_home)/bin/java" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$KAFKA_LIBS/*" \
    -Dlog4j.configuration="file:$props" "$@"
}

# wait_ready <name> <seconds> [pid]: poll the probe; fail early when our process died.
wait_ready() {
  local name="$1" budget="$2" pid="${3:-}" start=$SECONDS
  while ((SECONDS - start < budget)); do
    if probe "$name"; then return 0; fi
    if [[ -n "$pid" ]] && ! pid_running "$pid"; then
      # Our process exited. Someone else may have taken the port meanwhile (a parallel `up`).
      if port_open "$(port_of "$name")" && probe "$name"; then rm -f "$(pid_file "$name")"; return 0; fi
      info "$name exited during start-up"
      tail_log "$name"
      return 1
    fi
    sleep 0.5
  done
  info "$name did not answer within ${budget}s"
  tail_log "$name"
  return 1
}

