#!/usr/bin/env bash
# Provision a Loa box in one run (docs/OPERATIONS.md, "Install and provision a box").
#
#   sudo ./flash.sh --device-id ID [--central-bundle DIR] [--ssh-key FILE]
#       on the box itself (Raspberry Pi OS Bookworm or Debian 12): Debian packages, users, the
#       agent in its own virtual environment, /etc/loa/agent.yaml, the central server's files,
#       the SSH key, password login off, the unit enabled and (re)started.
#   sudo ./flash.sh --device-id ID --root DIR  [...]   into a mounted Raspberry Pi OS root
#   sudo ./flash.sh --device-id ID --image FILE [...]  into an SD-card image (loop-mounted)
#       the same files, plus a wheelhouse and loa-firstboot.service, which finishes the install
#       offline at the first boot (Python environment from the wheelhouse, agent enabled).
#
# Options:
#   --dry-run          print every step and what it would change; touch nothing
#   --wheelhouse DIR   take the wheels from DIR (pip wheel -w DIR . on a machine of the box's
#                      architecture) instead of building them here
#   --first-boot       what loa-firstboot.service runs on the box: finish an install written by --root
# Environment: LOA_PYTHON, a Python that can import the agent's dependencies, checks agent.yaml
# before it is written into a tree (--root, --image); on the box the new environment checks it.
#
# Idempotent: every file is compared first and written only when it differs (temp file, fsync,
# rename), so a second run with the same arguments changes nothing and says so. Exit codes:
# 0 done, 1 a step failed, 2 wrong or missing arguments (one sentence on stderr).
set -euo pipefail

PREFIX=/opt/loa
CONF_DIR=/etc/loa
AGENT_USER=loa-agent
CREW_GROUP=loa
ADMIN_USER=loa-admin
HERE="$(cd "$(dirname "$0")" && pwd)"
PACKAGES=(python3 python3-venv python3-dev python3-cryptography python3-jwt
    vlc-bin vlc-plugin-base libvlc5 rtl-sdr librtlsdr0 alsa-utils)
# The agent's environment sees Debian's packages (--system-site-packages) and takes these from
# Debian, never from a wheel: Debian's cryptography uses the system's OpenSSL, which Debian's security
# updates mend, where the cryptography wheel carries an OpenSSL of its own (and about 5 MB more of
# each agent's memory: docs/BENCHMARKS.md). Their wheels are left out of the wheelhouse.
FROM_DEBIAN=(cryptography pyjwt)

DEVICE_ID="" BUNDLE="" SSH_KEY="" TREE="" IMAGE="" WHEELS="" DRY_RUN=0 FIRST_BOOT=0
CHANGES=0
WORK=""

usage_error() {  # one plain sentence, exit 2
    echo "flash.sh: $*" >&2
    exit 2
}

parse_args() {
    [ $# -gt 0 ] || usage_error "say which box this is: sudo ./flash.sh --device-id ID (see docs/OPERATIONS.md)."
    while [ $# -gt 0 ]; do
        case "$1" in
            --device-id | --central-bundle | --ssh-key | --root | --image | --wheelhouse)
                { [ $# -ge 2 ] && [ -n "$2" ]; } || usage_error "$1 needs a value."
                case "$1" in
                    --device-id) DEVICE_ID="$2" ;;
                    --central-bundle) BUNDLE="$2" ;;
                    --ssh-key) SSH_KEY="$2" ;;
                    --root) TREE="$2" ;;
                    --image) IMAGE="$2" ;;
                    --wheelhouse) WHEELS="$2" ;;
                esac
                shift 2
                ;;
            --dry-run) DRY_RUN=1 && shift ;;
            --first-boot) FIRST_BOOT=1 && shift ;;
            *) usage_error "unknown argument '$1': the arguments are --device-id, --central-bundle, --ssh-key, --root, --image, --wheelhouse and --dry-run." ;;
        esac
    done
    check_args
}

check_args() {
    [ "$FIRST_BOOT" = 1 ] && return 0
    [ -n "$DEVICE_ID" ] || usage_error "--device-id is required: the box's id, e.g. xa-quang-son-01."
    [[ "$DEVICE_ID" =~ ^[a-z0-9-]{3,64}$ ]] \
        || usage_error "--device-id '$DEVICE_ID' is not a box id: use 3 to 64 lowercase letters, digits and '-'."
    [ -z "$TREE" ] || [ -z "$IMAGE" ] || usage_error "give --root or --image, not both."
    [ -z "$TREE" ] || [ -d "$TREE" ] || usage_error "--root $TREE is not a directory."
    [ -z "$IMAGE" ] || [ -f "$IMAGE" ] || usage_error "--image $IMAGE is not a file."
    [ -z "$TREE" ] || { [ -f "$TREE/etc/os-release" ] && [ -f "$TREE/etc/passwd" ]; } \
        || usage_error "--root $TREE does not look like a Raspberry Pi OS root (no etc/os-release or etc/passwd)."
    [ -z "$WHEELS" ] || compgen -G "$WHEELS/loa-*.whl" > /dev/null \
        || usage_error "--wheelhouse $WHEELS holds no loa-*.whl."
    check_machine
    [ -z "$SSH_KEY" ] || grep -qE '^(ssh-|ecdsa-|sk-)' "$SSH_KEY" 2> /dev/null \
        || usage_error "--ssh-key $SSH_KEY is not an SSH public key file (a line starting ssh-ed25519, ssh-rsa, ...)."
    [ -z "$BUNDLE" ] || check_bundle
}

check_machine() {  # wheels built here fit a tree only if it is for this CPU
    local target
    target="$(tree_machine)"
    [ -n "$WHEELS" ] || [ -z "$target" ] || [ "$target" = "$(uname -m)" ] \
        || usage_error "the tree is for $target and this machine is $(uname -m): build the wheels on a box (pip wheel -w DIR .) and pass --wheelhouse DIR."
}

# The files `loa-central device add` writes: central.yaml (the agent's `central:` section) and the
# files it names, which must all be in the bundle under the same base names.
check_bundle() {
    [ -f "$BUNDLE/central.yaml" ] || usage_error "--central-bundle $BUNDLE has no central.yaml: give the directory 'loa-central device add' wrote."
    grep -q '^central:' "$BUNDLE/central.yaml" || usage_error "$BUNDLE/central.yaml has no 'central:' section."
    local named
    for named in $(bundle_files); do
        [ -f "$BUNDLE/$(basename "$named")" ] || usage_error "$BUNDLE/central.yaml names $named, which is not in the bundle."
        [ "$(dirname "$named")" = "$CONF_DIR" ] || usage_error "$BUNDLE/central.yaml names $named: the box's files live in $CONF_DIR."
    done
}

# Every path that central.yaml names (password_file, ca_file, signing_public_key_files, as a
# flow list or as "- PATH" lines).
bundle_files() {
    sed -n -E -e 's/^[[:space:]]*(password_file|ca_file|signing_public_key_files):(.*)$/\2/p' \
        -e 's/^[[:space:]]*-[[:space:]]+(.*)$/\1/p' "$BUNDLE/central.yaml" \
        | tr -s '[],"'"'"' \t' '\n' | grep '^/' | sort -u
}

step() {
    echo "==> $*"
}

run() {  # a command that changes the system: printed, and only printed with --dry-run
    echo "    + $*"
    [ "$DRY_RUN" = 1 ] || "$@"
}

changed() {
    CHANGES=$((CHANGES + 1))
    echo "    $*"
}

did() {  # did VERB REST: a change made by run, worded for a dry run too
    if [ "$DRY_RUN" = 1 ]; then changed "would $1 $2"; else changed "$1: $2"; fi
}

# Numeric ids as the target tree knows them (a Pi OS image has its own /etc/passwd).
uid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$TREE/etc/passwd"; }
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$TREE/etc/group"; }

owner_ids() {  # owner_ids USER GROUP -> "uid:gid", or nothing while they do not exist yet
    local uid gid
    uid="$(uid_of "$1")" gid="$(gid_of "$2")"
    [ -n "$uid" ] && [ -n "$gid" ] && echo "$uid:$gid"
}

# put_file SRC DEST MODE USER GROUP: DEST (inside the tree) gets SRC's bytes, mode and owner.
put_file() {
    local src="$1" dest="$TREE$2" mode="$3" ids tmp
    ids="$(owner_ids "$4" "$5")" || true
    if [ -f "$dest" ] && [ ! -L "$dest" ] && cmp -s "$src" "$dest" \
        && [ "$(stat -c '%a %u:%g' "$dest")" = "${mode#0} $ids" ]; then
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        changed "would write $2 ($mode $4:$5)"
        return 0
    fi
    [ -n "$ids" ] || { echo "flash.sh: $4:$5 does not exist in ${TREE:-/}etc/passwd" >&2; exit 1; }
    mkdir -p "$(dirname "$dest")"  # a system directory such as /etc/sysusers.d: root's, 0755
    tmp="$(dirname "$dest")/.$(basename "$dest").flash-tmp"
    cp "$src" "$tmp"
    chmod "$mode" "$tmp"
    chown "$ids" "$tmp"
    sync "$tmp"
    mv -f "$tmp" "$dest"
    sync "$(dirname "$dest")"
    changed "wrote $2 ($mode $4:$5)"
}

put_text() {  # put_text DEST MODE USER GROUP < text
    local src
    src="$(mktemp -p "$WORK")"
    cat > "$src"
    put_file "$src" "$@"
}

put_dir() {  # put_dir DEST MODE USER GROUP
    local dest="$TREE$1" ids
    ids="$(owner_ids "$3" "$4")" || true
    if [ -d "$dest" ] && [ ! -L "$dest" ] && [ "$(stat -c '%a %u:%g' "$dest")" = "${2#0} $ids" ]; then
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        changed "would make $1/ ($2 $3:$4)"
        return 0
    fi
    mkdir -p "$dest"
    chmod "$2" "$dest"
    chown "$ids" "$dest"
    changed "made $1/ ($2 $3:$4)"
}

put_link() {  # put_link TARGET DEST: a symbolic link as the box will see it
    if [ "$(readlink "$TREE$2" || true)" = "$1" ]; then
        return 0
    fi
    if [ "$DRY_RUN" = 1 ]; then
        changed "would link $2 -> $1"
        return 0
    fi
    mkdir -p "$(dirname "$TREE$2")"
    ln -sfn "$1" "$TREE$2"
    changed "linked $2 -> $1"
}

remove_file() {  # remove_file DEST
    [ -e "$TREE$1" ] || return 0
    if [ "$DRY_RUN" = 1 ]; then
        changed "would remove $1"
    else
        rm -f "$TREE$1"
        changed "removed $1"
    fi
}

# The version apt would install, or nothing when apt knows no such package: python3-lgpio is
# packaged by Raspberry Pi OS, not by Debian 12.
apt_candidate() {
    local candidate
    candidate="$(LC_ALL=C apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')"
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
        echo "$candidate"
    fi
}

install_packages() {
    local wanted=("${PACKAGES[@]}") missing=() package
    if [ -n "$(apt_candidate python3-lgpio)" ]; then
        wanted+=(python3-lgpio)
    else
        echo "    python3-lgpio is not packaged here (Raspberry Pi OS has it):" \
            "gpio.pin_factory 'lgpio', the default, will need it"
    fi
    for package in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2> /dev/null | grep -q "ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    run apt-get update -qq
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    did install "${missing[*]}"
}

# Users and groups, declared for systemd-sysusers: the same file makes them here, in a tree
# (--root) and again at first boot. gpio and the others are made when the system lacks them.
install_users() {
    put_text /etc/sysusers.d/loa.conf 0644 root root << EOF
# Loa (flash.sh): the agent's user, the crew's group, the service admin who logs in over SSH.
g $CREW_GROUP -
u $AGENT_USER -:$CREW_GROUP "Loa agent" /var/lib/loa -
m $AGENT_USER gpio
m $AGENT_USER audio
m $AGENT_USER dialout
m $AGENT_USER plugdev
u $ADMIN_USER - "Loa service admin" /home/$ADMIN_USER /bin/bash
m $ADMIN_USER $CREW_GROUP
m $ADMIN_USER sudo
EOF
    local before after
    before="$(cat "$TREE/etc/passwd" "$TREE/etc/group")"
    if [ -n "$TREE" ]; then
        run systemd-sysusers --root="$TREE" "$TREE/etc/sysusers.d/loa.conf"
    else
        run systemd-sysusers /etc/sysusers.d/loa.conf
    fi
    after="$(cat "$TREE/etc/passwd" "$TREE/etc/group")"
    [ "$before" = "$after" ] || changed "made the users $AGENT_USER, $ADMIN_USER and the group $CREW_GROUP"
}

# The wheels to install from: given (--wheelhouse), or built here for this machine.
wheel_source() {
    if [ -n "$WHEELS" ]; then
        echo "$WHEELS"
        return 0
    fi
    [ "$DRY_RUN" = 0 ] || return 0  # building needs the network and minutes: not for a dry run
    echo "    building the wheels of loa and its dependencies (pip wheel)" >&2
    /usr/bin/python3 -m venv "$WORK/build" >&2
    "$WORK/build/bin/pip" install -q --upgrade pip wheel >&2
    # A fixed build date makes the same source give the same wheel: a second run changes nothing.
    SOURCE_DATE_EPOCH="$(git -C "$HERE" log -1 --format=%ct 2> /dev/null || echo 315532800)" \
        "$WORK/build/bin/pip" wheel -q -w "$WORK/wheels" "$HERE" >&2
    echo "$WORK/wheels"
}

tree_machine() {  # the CPU the tree's Python is built for, from its ELF header
    local elf="$TREE/usr/bin/python3"
    [ -n "$TREE" ] && [ -e "$elf" ] || return 0
    elf="$TREE/usr/bin/$(readlink "$elf" || basename "$elf")"
    case "$(od -An -tu2 -j18 -N2 "$elf" | tr -d ' ')" in
        62) echo x86_64 ;;
        183) echo aarch64 ;;
        40) echo armv7l ;;
        *) echo unknown ;;
    esac
}

from_debian() {  # is the wheel file $1 one of a package the box takes from Debian (FROM_DEBIAN)?
    local name wheel="${1,,}"
    for name in "${FROM_DEBIAN[@]}"; do
        case "$wheel" in "$name"-*.whl) return 0 ;; esac
    done
    return 1
}

install_wheelhouse() {
    local source wheel name
    source="$(wheel_source)"
    put_dir "$PREFIX" 0755 root root
    put_dir "$PREFIX/wheelhouse" 0755 root root
    if [ -z "$source" ]; then
        changed "would build the wheels of loa and its dependencies (pip wheel) and copy those that differ"
        return 0
    fi
    for wheel in "$source"/*.whl; do
        name="$(basename "$wheel")"
        from_debian "$name" || put_file "$wheel" "$PREFIX/wheelhouse/$name" 0644 root root
    done
    for wheel in "$TREE$PREFIX/wheelhouse"/*.whl; do
        [ -e "$wheel" ] || continue
        name="$(basename "$wheel")"
        { [ -e "$source/$name" ] && ! from_debian "$name"; } || remove_file "$PREFIX/wheelhouse/$name"
    done
}

# The agent's own environment, from the wheelhouse only: the same at first boot, offline.
install_venv() {
    local stamp="$PREFIX/venv/.wheelhouse.sha256" sum
    sum="$(cd "$PREFIX/wheelhouse" 2> /dev/null && sha256sum -- *.whl | sha256sum | cut -d' ' -f1)" || sum=""
    if [ -n "$sum" ] && [ "$(cat "$stamp" 2> /dev/null || true)" = "$sum" ]; then
        return 0
    fi
    # Debian's Python, whose site-packages hold FROM_DEBIAN (and python3-lgpio). Every dependency
    # the wheelhouse has is brought to its version there; what it lacks must come from Debian.
    # Then loa itself, again: a wheel of the same version number may hold other code.
    [ -x "$PREFIX/venv/bin/python" ] || run /usr/bin/python3 -m venv --system-site-packages "$PREFIX/venv"
    run "$PREFIX/venv/bin/pip" install -q --no-index --find-links "$PREFIX/wheelhouse" \
        --upgrade --upgrade-strategy eager loa
    run "$PREFIX/venv/bin/pip" install -q --no-index --find-links "$PREFIX/wheelhouse" \
        --force-reinstall --no-deps loa
    [ "$DRY_RUN" = 1 ] || echo "$sum" > "$stamp"
    did install "loa into $PREFIX/venv from $PREFIX/wheelhouse"
}

# agent.yaml: the example with this box's id, plus the bundle's central section. A file edited
# by hand since flash.sh wrote it is kept (the bundle's section is appended if it has none).
install_config() {
    put_dir "$CONF_DIR" 0750 root "$CREW_GROUP"
    local config="$WORK/agent.yaml" current="$TREE$CONF_DIR/agent.yaml" written="$TREE$CONF_DIR/.agent.yaml.sha256"
    {
        echo "# Written by flash.sh for $DEVICE_ID. Edit freely: flash.sh then leaves this file alone."
        sed -e '/^# The link to the central server/,$d' \
            -e "s/^  id: xa-quang-son-01\$/  id: $DEVICE_ID/" "$HERE/config.example.yaml"
        [ -z "$BUNDLE" ] || { echo && cat "$BUNDLE/central.yaml"; }
    } > "$config"
    check_config "$config"
    if [ -e "$current" ] && [ "$(sha256_of "$current")" != "$(cat "$written" 2> /dev/null || true)" ]; then
        if [ -n "$BUNDLE" ] && ! grep -q '^central:' "$current"; then
            { cat "$current" && echo && cat "$BUNDLE/central.yaml"; } > "$config"
            check_config "$config"
        else
            echo "    kept $CONF_DIR/agent.yaml: edited by hand since flash.sh wrote it"
            return 0
        fi
    fi
    put_file "$config" "$CONF_DIR/agent.yaml" 0640 root "$CREW_GROUP"
    put_text "$CONF_DIR/.agent.yaml.sha256" 0600 root root <<< "$(sha256_of "$config")"  # what flash.sh wrote
    if [ ! -e "$TREE$CONF_DIR/schedule.yaml" ]; then
        # The example config names this file; an empty schedule is valid (docs/SCHEDULING.md).
        put_text "$CONF_DIR/schedule.yaml" 0640 root "$CREW_GROUP" \
            < <(printf '# Local schedule: see %s/docs/SCHEDULING.md\nitems: []\n' "$PREFIX")
    fi
    install_bundle
}

sha256_of() { sha256sum < "$1" | cut -d' ' -f1; }

check_config() {  # refuse a config that check-config refuses, before it is written anywhere
    local agent="$PREFIX/venv/bin/loa-agent" result=0
    if [ -z "$TREE" ] && [ -x "$agent" ]; then
        "$agent" --config "$1" check-config --config-only || result=$?
    elif [ -n "${LOA_PYTHON:-}" ]; then
        PYTHONPATH="$HERE" "$LOA_PYTHON" -m agent.daemon --config "$1" check-config --config-only || result=$?
    else
        echo "    agent.yaml is checked when the agent starts (set LOA_PYTHON to check it now)"
        return 0
    fi
    [ "$result" = 0 ] || usage_error "check-config refuses the agent.yaml made from these arguments (above): nothing was written."
}

install_bundle() {
    [ -n "$BUNDLE" ] || return 0
    local named name
    for named in $(bundle_files); do
        name="$(basename "$named")"
        case "$name" in
            *password* | *.key) put_file "$BUNDLE/$name" "$named" 0400 "$AGENT_USER" root ;;  # a secret
            *) put_file "$BUNDLE/$name" "$named" 0644 root root ;;
        esac
    done
}

install_ssh() {
    put_text /etc/ssh/sshd_config.d/loa.conf 0644 root root << 'EOF'
# Loa (flash.sh): keys only. Read before /etc/ssh/sshd_config's own lines, so it wins.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
EOF
    put_text "/etc/sudoers.d/$ADMIN_USER" 0440 root root <<< "$ADMIN_USER ALL=(ALL) NOPASSWD: ALL"
    local home="/home/$ADMIN_USER" keys="$WORK/authorized_keys"
    put_dir "$home" 0750 "$ADMIN_USER" "$ADMIN_USER"
    put_dir "$home/.ssh" 0700 "$ADMIN_USER" "$ADMIN_USER"
    touch "$keys"
    [ ! -f "$TREE$home/.ssh/authorized_keys" ] || cat "$TREE$home/.ssh/authorized_keys" > "$keys"
    if [ -n "$SSH_KEY" ]; then
        grep -E '^(ssh-|ecdsa-|sk-)' "$SSH_KEY" | while read -r line; do
            grep -qxF "$line" "$keys" || echo "$line" >> "$keys"
        done
    fi
    if [ -s "$keys" ]; then
        put_file "$keys" "$home/.ssh/authorized_keys" 0600 "$ADMIN_USER" "$ADMIN_USER"
    else
        echo "    WARNING: no SSH key for $ADMIN_USER and password login is off: give --ssh-key FILE"
    fi
}

install_units() {
    put_file "$HERE/systemd/loa-agent.service" /etc/systemd/system/loa-agent.service 0644 root root
    put_file "$HERE/flash.sh" "$PREFIX/flash.sh" 0755 root root
    put_file "$HERE/config.example.yaml" "$PREFIX/config.example.yaml" 0644 root root
    local doc
    put_dir "$PREFIX/docs" 0755 root root
    for doc in "$HERE"/docs/*.md; do
        put_file "$doc" "$PREFIX/docs/$(basename "$doc")" 0644 root root
    done
    local command
    for command in loa loa-agent; do  # the commands the README and the unit's messages name
        put_link "$PREFIX/venv/bin/$command" "/usr/local/bin/$command"
    done
}

enable_in_tree() {  # enable_in_tree UNIT: as `systemctl enable` would on the box
    local link="/etc/systemd/system/multi-user.target.wants/$1"
    [ "$(readlink "$TREE$link" || true)" != "" ] && return 0
    run systemctl --root="$TREE" --quiet enable "$1"
    did enable "$1"
}

install_first_boot() {
    put_file "$HERE/systemd/loa-firstboot.service" /etc/systemd/system/loa-firstboot.service 0644 root root
    enable_in_tree loa-firstboot.service
    if [ -n "$SSH_KEY" ] && [ -e "$TREE/lib/systemd/system/ssh.service" ]; then
        enable_in_tree ssh.service
    fi
}

# On the box: environment, check, unit enabled and restarted when anything changed.
start_agent() {
    run systemctl daemon-reload
    if ! systemctl --quiet is-enabled loa-agent.service 2> /dev/null; then
        run systemctl enable loa-agent.service
        did enable loa-agent.service
    fi
    if [ "$CHANGES" -gt 0 ] || ! systemctl --quiet is-active loa-agent.service; then
        # At first boot the boot's own transaction is still running: queue the job, do not wait.
        if [ "$FIRST_BOOT" = 1 ]; then
            run systemctl --no-block restart loa-agent.service
        else
            run systemctl restart loa-agent.service
        fi
    fi
    # sshd -t first: a drop-in sshd refuses would lock everyone out at its next start.
    if systemctl --quiet is-active ssh.service 2> /dev/null && run sshd -t; then
        run systemctl reload ssh.service
    fi
}

# What loa-firstboot.service runs: the steps that need the box itself, then it turns itself off.
first_boot() {
    step "Debian packages" && install_packages
    step "users and groups" && install_users
    step "Python environment in $PREFIX/venv" && install_venv
    step "loa-agent" && start_agent
    run systemctl disable loa-firstboot.service
    echo "==> first boot done: 'loa status' shows what the agent does"
}

# --image: the image's root partition (the second of its MBR table), through a loop device set
# at its offset (no partition scan, which containers and some kernels lack). Nothing goes to the
# boot partition. With --dry-run the device is read-only and the journal is not replayed.
mount_image() {
    local entry=$((446 + 16)) signature start count options=rw readonly=() loop
    signature="$(od -An -tx1 -j510 -N2 "$IMAGE" | tr -d ' ')"
    start="$(od -An -tu4 -j $((entry + 8)) -N4 "$IMAGE" | tr -d ' ')"
    count="$(od -An -tu4 -j $((entry + 12)) -N4 "$IMAGE" | tr -d ' ')"
    { [ "$signature" = 55aa ] && [ "${count:-0}" -gt 0 ]; } \
        || usage_error "--image $IMAGE has no second partition in an MBR table, as Raspberry Pi OS images have."
    [ "$DRY_RUN" = 0 ] || { options=ro,noload && readonly=(--read-only); }
    loop="$(losetup --find --show "${readonly[@]}" --offset $((start * 512)) --sizelimit $((count * 512)) "$IMAGE")"
    TREE="$WORK/root"
    mkdir -p "$TREE"
    trap 'umount "$TREE" 2> /dev/null; losetup -d '"$loop"'; rm -rf "$WORK"' EXIT
    mount -o "$options" "$loop" "$TREE"
    { [ -f "$TREE/etc/os-release" ] && [ -f "$TREE/etc/passwd" ]; } \
        || usage_error "--image $IMAGE has no Raspberry Pi OS root on its second partition."
}

main() {
    parse_args "$@"
    if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
        echo "flash.sh: run it as root (sudo ./flash.sh ...), or with --dry-run to see what it would do." >&2
        exit 1
    fi
    WORK="$(mktemp -d)"
    trap 'rm -rf "$WORK"' EXIT
    if [ "$FIRST_BOOT" = 1 ]; then
        first_boot
        return 0
    fi
    [ -z "$IMAGE" ] || { mount_image && check_machine; }
    TREE="${TREE%/}"
    [ -z "$TREE" ] || TREE="$(cd "$TREE" && pwd)"
    [ -n "$TREE" ] || { step "Debian packages" && install_packages; }
    step "users and groups" && install_users
    step "wheelhouse in $PREFIX/wheelhouse" && install_wheelhouse
    [ -n "$TREE" ] || { step "Python environment in $PREFIX/venv" && install_venv; }
    step "configuration in $CONF_DIR" && install_config
    step "SSH: keys only, for $ADMIN_USER" && install_ssh
    step "systemd units, docs and commands" && install_units
    if [ -n "$TREE" ]; then
        step "first boot" && install_first_boot
    else
        step "loa-agent" && start_agent
    fi
    if [ "$CHANGES" = 0 ]; then
        echo "==> nothing changed: ${IMAGE:-${TREE:-this box}} was already provisioned for $DEVICE_ID"
    elif [ "$DRY_RUN" = 1 ]; then
        echo "==> dry run: $CHANGES change(s) would be made; nothing was touched"
    else
        echo "==> $CHANGES change(s) made for $DEVICE_ID"
    fi
}

# Sourced (the tests call its functions alone), it only defines them.
(return 0 2> /dev/null) || main "$@"
