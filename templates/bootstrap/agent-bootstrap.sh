#!/bin/sh
# SlipStream agent bootstrap (cloud user data): make sure python3 exists, fetch the agent
# from the server, check it is the file the service sent (its SHA-256), write its settings
# and start it detached. Rendered by providers_map/bootstrap.py: Terraform fills in the six
# values below, already quoted for the shell; everything else reaches the machine as
# written here. The agent pins the server's certificate (FINGERPRINT) before it sends its
# token; the download itself needs no trust in the network, only the hash.
set -u

SERVER=__SLIPSTREAM_SERVER__
RUN_ID=__SLIPSTREAM_RUN_ID__
INSTANCE=__SLIPSTREAM_INSTANCE__
TOKEN=__SLIPSTREAM_TOKEN__
FINGERPRINT=__SLIPSTREAM_FINGERPRINT__
AGENT_SHA256=__SLIPSTREAM_AGENT_SHA256__

# Overridable so the script can be exercised without root; clouds never set these.
BOOT_DIR="${SLIPSTREAM_BOOT_DIR:-/opt/slipstream}"
LOG="${SLIPSTREAM_BOOT_LOG:-/var/log/slipstream-agent.log}"
AGENT_URL="${SERVER%/}/agent/v1/agent.py"

say() { echo "slipstream-bootstrap: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# Tries "$@" up to $1 times, 10 s apart: package locks and networks settle after first boot.
retry() {
    tries=$1; shift
    n=1
    until "$@"; do
        [ "$n" -ge "$tries" ] && return 1
        n=$((n + 1))
        sleep 10
    done
}

apt_install() { apt-get update -q && apt-get install -y -q python3; }

ensure_python() {
    have python3 && return 0
    say "installing python3"
    if have apt-get; then
        export DEBIAN_FRONTEND=noninteractive
        retry 30 apt_install
    elif have dnf; then
        retry 10 dnf install -y python3
    elif have yum; then
        retry 10 yum install -y python3
    else
        say "no apt-get, dnf or yum to install python3 with"
        return 1
    fi
    have python3
}

# The agent file is public and checked by its hash below: the server's certificate (often
# self-signed, pinned by the agent itself) need not be trusted for this download.
fetch() {
    if have curl; then
        curl -fsSL --insecure --connect-timeout 20 --max-time 120 -o "$2" "$1"
    elif have wget; then
        wget -q --no-check-certificate -T 60 -O "$2" "$1"
    else
        python3 - "$1" "$2" <<'PY'
import ssl, sys, urllib.request
context = ssl._create_unverified_context()
with urllib.request.urlopen(sys.argv[1], timeout=60, context=context) as reply:
    open(sys.argv[2], "wb").write(reply.read())
PY
    fi
}

sha256_of() {
    python3 -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "$1"
}

ensure_python || { say "python3 is missing and could not be installed"; exit 1; }

umask 077
mkdir -p "$BOOT_DIR" || exit 1
chmod 700 "$BOOT_DIR"
if ! retry 30 fetch "$AGENT_URL" "$BOOT_DIR/agent.py.part"; then
    say "could not download the agent from $AGENT_URL"
    exit 1
fi
if [ "$(sha256_of "$BOOT_DIR/agent.py.part")" != "$AGENT_SHA256" ]; then
    say "the agent downloaded from $AGENT_URL is not the one the service sent (SHA-256 differs)"
    rm -f "$BOOT_DIR/agent.py.part"
    exit 1
fi
mv -f "$BOOT_DIR/agent.py.part" "$BOOT_DIR/agent.py"

printf '%s=%s\n' \
    SLIPSTREAM_SERVER "$SERVER" \
    SLIPSTREAM_RUN_ID "$RUN_ID" \
    SLIPSTREAM_INSTANCE "$INSTANCE" \
    SLIPSTREAM_TOKEN "$TOKEN" \
    SLIPSTREAM_SERVER_FINGERPRINT "$FINGERPRINT" \
    SLIPSTREAM_BIND_HOST 0.0.0.0 > "$BOOT_DIR/agent.env"
chmod 600 "$BOOT_DIR/agent.env"

# Detached, or cloud-init would wait for the agent and the instance would never finish booting.
cd "$BOOT_DIR" || exit 1
if have setsid; then
    nohup setsid python3 "$BOOT_DIR/agent.py" run --env-file "$BOOT_DIR/agent.env" \
        >> "$LOG" 2>&1 < /dev/null &
else
    nohup python3 "$BOOT_DIR/agent.py" run --env-file "$BOOT_DIR/agent.env" \
        >> "$LOG" 2>&1 < /dev/null &
fi
say "agent started for $INSTANCE of run $RUN_ID"
