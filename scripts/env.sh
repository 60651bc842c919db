# shellcheck shell=bash
# Sourced helper for run.sh / test.sh: loads .env, makes secrets, finds free ports.
# Usage: source scripts/env.sh; load_dotenv .env; gen_secret; free_port

# Repo root (this file lives in scripts/).
DIALER_ROOT="${DIALER_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"

# load_dotenv FILE: export KEY=VALUE lines from FILE (if it exists).
# Format (the same as common/config.c reads): blank lines and lines starting
# with # are ignored; an optional leading `export `; spaces around = and the
# value are trimmed; one pair of matching single or double quotes around the
# value is removed (no expansion, no escapes); no inline comments. A key set to a
# non-empty value in the environment keeps it: the environment wins over .env.
load_dotenv() {
    local file="$1" line key val
    [[ -f "$file" ]] || return 0
    while IFS= read -r line || [[ -n "$line" ]]; do
        line="${line%$'\r'}"
        [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
        if [[ ! "$line" =~ ^[[:space:]]*(export[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*=(.*)$ ]]; then
            echo "warning: $file: ignoring malformed line: $line" >&2
            continue
        fi
        key="${BASH_REMATCH[2]}"
        val="${BASH_REMATCH[3]}"
        # Trim surrounding whitespace, then one pair of matching quotes.
        val="${val#"${val%%[![:space:]]*}"}"
        val="${val%"${val##*[![:space:]]}"}"
        if [[ ${#val} -ge 2 && ( ( "$val" == \"*\" ) || ( "$val" == \'*\' ) ) ]]; then
            val="${val:1:${#val}-2}"
        fi
        [[ -n "${!key:-}" ]] && continue   # environment wins
        export "$key=$val"
    done <"$file"
}

# gen_secret: print 64 hex characters (256 random bits).
gen_secret() {
    if command -v openssl >/dev/null 2>&1; then
        openssl rand -hex 32
    else
        od -An -tx1 -N32 /dev/urandom | tr -d ' \n'
        echo
    fi
}

# port_in_use PORT: true when something listens on TCP PORT (any address).
port_in_use() {
    local port="$1"
    if command -v ss >/dev/null 2>&1; then
        [[ -n "$(ss -Htln "sport = :$port" 2>/dev/null)" ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
    fi
}

# free_port: print a random TCP port in 20000-32000 that nothing listens on.
# Ports already handed out by this shell are not handed out again.
_DIALER_PORTS_GIVEN=" "
free_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        # below Linux's ephemeral range (32768-60999 by default), where a client
        # connection's local port could take the port between check and bind
        port=$(( ((RANDOM << 15) | RANDOM) % 12001 + 20000 ))
        [[ "$_DIALER_PORTS_GIVEN" == *" $port "* ]] && continue
        port_in_use "$port" && continue
        _DIALER_PORTS_GIVEN+="$port "
        echo "$port"
        return 0
    done
    echo "free_port: no free port found in 20000-32000" >&2
    return 1
}

# read_or_create_secret FILE: print the secret stored in FILE, first creating
# it (mode 600) with a fresh secret when missing or empty.
read_or_create_secret() {
    local file="$1"
    if [[ ! -s "$file" ]]; then
        (umask 077 && gen_secret >"$file")
        chmod 600 "$file"
    fi
    tr -d ' \n\r' <"$file"
    echo
}
