#!/usr/bin/env bash
# Install the Loa agent on a Raspberry Pi OS (Bookworm) or Debian 12 box.
#   sudo ./flash.sh            install or upgrade from this checkout
# Leaves an existing /etc/loa/agent.yaml alone; installs the example config otherwise.
set -euo pipefail

PREFIX=/opt/loa
CONF_DIR=/etc/loa
HERE="$(cd "$(dirname "$0")" && pwd)"

# The version apt would install, or nothing when apt knows no such package: python3-lgpio is
# packaged by Raspberry Pi OS, not by Debian 12.
apt_candidate() {
    local candidate
    candidate="$(LC_ALL=C apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')"
    if [ -n "$candidate" ] && [ "$candidate" != "(none)" ]; then
        echo "$candidate"
    fi
}

# The commands the README and the unit's messages name, on root's PATH.
link_commands() {  # link_commands PREFIX BINDIR
    local command
    for command in loa loa-agent; do
        ln -sf "$1/venv/bin/$command" "$2/$command"
    done
}

if [ "$(id -u)" != 0 ]; then
    echo "flash.sh: run as root (sudo ./flash.sh)" >&2
    exit 1
fi

echo "==> Debian packages"
apt-get update -qq
PACKAGES=(python3 python3-venv python3-dev vlc-bin vlc-plugin-base libvlc5 rtl-sdr librtlsdr0 alsa-utils)
if [ -n "$(apt_candidate python3-lgpio)" ]; then
    PACKAGES+=(python3-lgpio)
else
    echo "    python3-lgpio is not packaged here (Raspberry Pi OS has it):" \
        "gpio.pin_factory 'lgpio', the default, will need it"
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"

echo "==> Python environment in $PREFIX/venv"
mkdir -p "$PREFIX"
python3 -m venv --system-site-packages "$PREFIX/venv"   # system site: python3-lgpio
"$PREFIX/venv/bin/pip" install -q --upgrade pip
"$PREFIX/venv/bin/pip" install -q "$HERE"
rm -rf "$PREFIX/docs" && cp -r "$HERE/docs" "$PREFIX/docs"

echo "==> Configuration in $CONF_DIR"
install -d -m 0755 "$CONF_DIR"
if [ ! -e "$CONF_DIR/agent.yaml" ]; then
    install -m 0640 "$HERE/config.example.yaml" "$CONF_DIR/agent.yaml"
    echo "    wrote $CONF_DIR/agent.yaml from the example: set device.id and the amplifier pins"
fi
if [ ! -e "$CONF_DIR/schedule.yaml" ]; then
    # The example config names this file; an empty schedule is valid (see docs/SCHEDULING.md).
    printf '# Local schedule: see /opt/loa/docs/SCHEDULING.md\nitems: []\n' > "$CONF_DIR/schedule.yaml"
    chmod 0644 "$CONF_DIR/schedule.yaml"
fi

echo "==> systemd unit"
install -m 0644 "$HERE/systemd/loa-agent.service" /etc/systemd/system/loa-agent.service
systemctl daemon-reload
systemctl enable loa-agent.service
if "$PREFIX/venv/bin/loa-agent" --config "$CONF_DIR/agent.yaml" check-config; then
    systemctl restart loa-agent.service
    echo "==> loa-agent running: 'sudo loa status' shows what it does"
else
    echo "==> fix $CONF_DIR/agent.yaml, then: sudo systemctl restart loa-agent" >&2
fi
link_commands "$PREFIX" /usr/local/bin
