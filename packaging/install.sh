#!/bin/sh
# backbench installer for Linux distributions without .deb packages (run from the
# unpacked backbench-VERSION-linux-ARCH tarball, as root):
#
#   sudo ./install.sh [--prefix /opt/backbench] [--agent] [--gui] [--no-enable]
#   sudo ./install.sh --uninstall [--purge] [--agent] [--gui]
#
# Without --agent or --gui, both are installed (or uninstalled).
#   agent: PREFIX/agent (the bundle), PREFIX/worker, /usr/local/bin/backbench-agent, the unit
#          /etc/systemd/system/backbench-agent.service (ExecStart= pointing into PREFIX), the
#          user and group (/etc/sysusers.d/backbench.conf), the NCS2 rule
#          /etc/udev/rules.d/97-backbench-ncs2.rules, /etc/backbench/agent.toml if there is
#          none. A first install enables and starts the service, unless --no-enable,
#          BACKBENCH_NO_ENABLE=1 or the file /etc/backbench/no-enable says not to.
#   gui:   PREFIX/gui, /usr/local/bin/backbench-gui, the .desktop entry and icons under
#          /usr/local/share.
# Running it again upgrades in place: a running agent is stopped, its files replaced, and
# started again; /etc/backbench/agent.toml and the store are never touched.
# --uninstall removes the programs and keeps /etc/backbench and the results store
# /var/lib/backbench (results.db, uploads); --purge deletes those too. The backbench user
# and group are kept either way (userdel backbench; groupdel backbench).
# --root DIR installs into DIR as if it were / (an image being built, or a test): nothing
# is started, and root is not needed.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
UNIT=backbench-agent.service
prefix=/opt/backbench
root=
want_agent=no
want_gui=no
enable=yes
uninstall=no
purge=no

usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: error: $*" >&2; exit 2; }
say() { echo "install.sh: $*"; }
have() { command -v "$1" >/dev/null 2>&1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) [ $# -ge 2 ] || die "--prefix needs a folder"; prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=} ;;
    --root) [ $# -ge 2 ] || die "--root needs a folder"; root=$2; shift ;;
    --root=*) root=${1#--root=} ;;
    --agent) want_agent=yes ;;
    --gui) want_gui=yes ;;
    --no-enable) enable=no ;;
    --uninstall) uninstall=yes ;;
    --purge) purge=yes ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

case "$prefix" in /*) ;; *) die "--prefix must be an absolute path, not $prefix" ;; esac
case "$prefix" in /home/* | /root/* | /run/user/*)
    die "--prefix $prefix: the service cannot read home folders (ProtectHome=yes); use /opt/backbench" ;;
esac
prefix=${prefix%/}
if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
    [ "$root" = / ] && root=
fi
[ "$purge" = no ] || [ "$uninstall" = yes ] || die "--purge goes with --uninstall"
[ -n "$root" ] || [ "$(id -u)" -eq 0 ] || die "run it as root: sudo $0 $*"
if [ "$want_agent" = no ] && [ "$want_gui" = no ]; then
    want_agent=yes
    want_gui=yes
fi
case "${BACKBENCH_NO_ENABLE:-}" in 1 | yes | true) enable=no ;; esac
[ -e "$root/etc/backbench/no-enable" ] && enable=no

R=$root                  # every installed path is "$R/..."
P=$root$prefix
live=no                  # systemd runs here, and this is the real root
[ -z "$root" ] && [ -d /run/systemd/system ] && have systemctl && live=yes
offline_systemctl() { systemctl ${root:+--root="$root"} "$@"; }

# -- install ---------------------------------------------------------------------------

# Copy a bundle folder into place: beside it first, then swapped in.
place() {  # place SRC DEST
    [ -d "$1" ] || die "$1 is missing from this tarball"
    rm -rf "$2.new"
    mkdir -p "$(dirname "$2")"
    cp -R "$1" "$2.new"
    chmod -R u+rwX,go+rX,go-w "$2.new"
    rm -rf "$2.old"
    [ ! -e "$2" ] || mv "$2" "$2.old"
    mv "$2.new" "$2"
    rm -rf "$2.old"
}

put() {  # put SRC DEST [MODE]
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2.tmp"
    chmod "${3:-0644}" "$2.tmp"
    mv "$2.tmp" "$2"
}

make_user() {
    if have systemd-sysusers; then
        systemd-sysusers ${root:+--root="$root"} backbench.conf
        return
    fi
    grep -q '^backbench:' "$R/etc/group" 2>/dev/null ||
        groupadd --system ${root:+--root "$root"} backbench
    grep -q '^backbench:' "$R/etc/passwd" 2>/dev/null ||
        useradd --system ${root:+--root "$root"} --gid backbench --home-dir /var/lib/backbench \
            --no-create-home --shell /usr/sbin/nologin --comment "backbench agent" backbench
}

install_agent() {
    [ -x "$here/agent/backbench-agent" ] || die "no agent bundle in $here/agent"
    unit=$R/etc/systemd/system/$UNIT
    first=yes
    [ -e "$unit" ] && first=no
    was_active=no
    if [ "$live" = yes ] && systemctl is-active --quiet "$UNIT"; then
        was_active=yes
        say "stopping the agent to upgrade it"
        systemctl stop "$UNIT" || true
    fi
    place "$here/agent" "$P/agent"
    place "$here/worker" "$P/worker"
    mkdir -p "$R/usr/local/bin"
    ln -sfn "$prefix/agent/backbench-agent" "$R/usr/local/bin/backbench-agent"
    mkdir -p "$R/etc/systemd/system"
    sed -e "s|^ExecStart=/usr/bin/backbench-agent|ExecStart=$prefix/agent/backbench-agent|" \
        -e "s|file:///usr/share/doc/backbench[^ ]*/AGENT.md|file://$prefix/doc/AGENT.md|" \
        "$here/systemd/$UNIT" >"$unit.tmp"
    chmod 0644 "$unit.tmp"
    mv "$unit.tmp" "$unit"
    put "$here/systemd/backbench.sysusers.conf" "$R/etc/sysusers.d/backbench.conf"
    put "$here/udev/97-backbench-ncs2.rules" "$R/etc/udev/rules.d/97-backbench-ncs2.rules"
    if [ ! -e "$R/etc/backbench/agent.toml" ]; then
        put "$here/etc/agent.toml" "$R/etc/backbench/agent.toml"
    fi
    mkdir -p "$P/doc/examples"
    for f in "$here"/docs/*.md; do [ -e "$f" ] && put "$f" "$P/doc/$(basename "$f")"; done
    for f in "$here"/systemd/dropins/*.conf; do [ -e "$f" ] && put "$f" "$P/doc/examples/$(basename "$f")"; done
    [ -e "$here/VERSION" ] && put "$here/VERSION" "$P/VERSION"
    make_user
    if [ -z "$root" ] && have udevadm && [ -e /run/udev/control ]; then
        udevadm control --reload-rules || true
        udevadm trigger --subsystem-match=usb --attr-match=idVendor=03e7 || true
    fi
    if ! have systemctl; then
        say "no systemctl here: start $prefix/agent/backbench-agent --group backbench yourself"
        return
    fi
    if [ "$first" = yes ]; then
        if [ "$enable" = yes ]; then
            offline_systemctl enable "$UNIT"
        else
            say "not enabled (--no-enable, BACKBENCH_NO_ENABLE or /etc/backbench/no-enable): systemctl enable --now $UNIT"
        fi
    fi
    if [ "$live" = yes ]; then
        systemctl daemon-reload
        if [ "$was_active" = yes ] || { [ "$first" = yes ] && [ "$enable" = yes ]; }; then
            systemctl start "$UNIT" || say "the agent did not start: journalctl -u backbench-agent"
        fi
    fi
    say "agent installed in $P/agent; socket /run/backbench/agent.sock for the backbench group" \
        "(usermod -aG backbench USER, then log in again)"
}

install_gui() {
    [ -x "$here/gui/backbench-gui" ] || die "no GUI bundle in $here/gui"
    place "$here/gui" "$P/gui"
    mkdir -p "$R/usr/local/bin"
    ln -sfn "$prefix/gui/backbench-gui" "$R/usr/local/bin/backbench-gui"
    share=$R/usr/local/share
    put "$here/desktop/backbench.desktop" "$share/applications/backbench.desktop"
    put "$here/desktop/backbench.svg" "$share/icons/hicolor/scalable/apps/backbench.svg"
    put "$here/desktop/backbench-256.png" "$share/icons/hicolor/256x256/apps/backbench.png"
    if [ -z "$root" ]; then
        have update-desktop-database && update-desktop-database -q "$share/applications" || true
        have gtk-update-icon-cache && gtk-update-icon-cache -q -t "$share/icons/hicolor" || true
    fi
    say "GUI installed in $P/gui: run backbench-gui, or find backbench in the applications menu"
}

# -- uninstall -------------------------------------------------------------------------

uninstall_agent() {
    if [ "$live" = yes ]; then
        systemctl disable --now "$UNIT" 2>/dev/null || true
    elif have systemctl && [ -e "$R/etc/systemd/system/$UNIT" ]; then
        offline_systemctl disable "$UNIT" 2>/dev/null || true
    fi
    rm -f "$R/etc/systemd/system/multi-user.target.wants/$UNIT" "$R/etc/systemd/system/$UNIT"
    rm -f "$R/usr/local/bin/backbench-agent" "$R/etc/sysusers.d/backbench.conf" \
        "$R/etc/udev/rules.d/97-backbench-ncs2.rules"
    rm -rf "$P/agent" "$P/worker" "$P/doc" "$P/VERSION"
    [ "$live" = yes ] && systemctl daemon-reload || true
    if [ "$purge" = yes ]; then
        rm -rf "$R/etc/backbench" "$R/var/lib/backbench" "$R/var/cache/backbench"
        say "agent removed, with /etc/backbench and the store /var/lib/backbench"
    else
        say "agent removed; kept /etc/backbench and the store /var/lib/backbench (--purge deletes them)"
    fi
}

uninstall_gui() {
    rm -rf "$P/gui"
    rm -f "$R/usr/local/bin/backbench-gui" "$R/usr/local/share/applications/backbench.desktop" \
        "$R/usr/local/share/icons/hicolor/scalable/apps/backbench.svg" \
        "$R/usr/local/share/icons/hicolor/256x256/apps/backbench.png"
    say "GUI removed"
}

if [ "$uninstall" = yes ]; then
    [ "$want_agent" = no ] || uninstall_agent
    [ "$want_gui" = no ] || uninstall_gui
    rmdir "$P" 2>/dev/null || true
else
    [ "$want_agent" = no ] || install_agent
    [ "$want_gui" = no ] || install_gui
fi
