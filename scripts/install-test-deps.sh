#!/usr/bin/env bash
# Installs the Debian packages aupguard's integration tests need
# (internal/testenv starts private Redis and Postfix instances), then stops
# and disables the system-wide postfix and redis-server services that Debian
# starts on installation: the tests run their own instances on free ports.
#
# Idempotent: installs only what is missing, prints one line per action.
# Needs root (or sudo). Works with systemd, SysV init or no init at all.
#
# Usage: scripts/install-test-deps.sh
set -euo pipefail

# Packages the tests need. Add new ones here.
PACKAGES=(
	redis-server     # testenv.StartRedis, StartRedisCluster
	redis-tools      # redis-cli --cluster create
	postfix          # testenv.StartPostfix
	sasl2-bin        # saslpasswd2 for the submission listener's users
	libsasl2-modules # Cyrus SASL PLAIN/LOGIN mechanisms
	chromium         # dashboard browser test
	python3-dkim     # independent DKIM verifier (dkimpy) for the signing tests
	util-linux       # unshare, setpriv: Postfix.SendmailAs submits as a Unix user
	prometheus       # promtool: check and unit-test configs/prometheus/aupguard-alerts.yml
	mount            # mount --bind in SendmailAs's private mount namespace
	libssl-dev       # the optional OpenSSL RSA signer (go test -tags openssl)
	systemd          # systemd-analyze verify, systemd-sysusers, systemd-tmpfiles: the Debian package test
	clamav-daemon    # testenv.StartClamd: the content family's malware check
	rspamd           # testenv.StartRspamd: the content family's spam_score check
	systemd-journal-remote # journal files from export format: the delivery-log reader's journal test
)

# System services the packages start that the tests must not compete with.
SERVICES=(postfix redis-server prometheus clamav-daemon clamav-freshclam rspamd systemd-journal-remote)

say() { printf 'install-test-deps: %s\n' "$*"; }

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		say "must run as root (or with sudo available)" >&2
		exit 1
	fi
fi

LOG=$(mktemp)
POLICY_RC=/usr/sbin/policy-rc.d
POLICY_RC_OURS=
cleanup() {
	if [[ -n $POLICY_RC_OURS ]]; then
		"${SUDO[@]}" rm -f "$POLICY_RC"
	fi
	rm -f "$LOG"
}
trap cleanup EXIT

# run CMD...: runs quietly; on failure shows the command's output.
run() {
	if ! "$@" >>"$LOG" 2>&1; then
		say "failed: $*" >&2
		tail -n 40 "$LOG" >&2
		exit 1
	fi
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

missing=()
for pkg in "${PACKAGES[@]}"; do
	installed "$pkg" || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
	# Postfix asks what kind of mail system to set up; answer "none" so the
	# installation is non-interactive and leaves /etc/postfix unconfigured.
	if [[ " ${missing[*]} " == *" postfix "* ]]; then
		echo 'postfix postfix/main_mailer_type select No configuration' |
			run "${SUDO[@]}" debconf-set-selections
		say "preseeded debconf: postfix/main_mailer_type = No configuration"
	fi
	# Keep maintainer scripts from starting services during installation
	# (unless the machine already has its own policy).
	if [[ ! -e $POLICY_RC ]]; then
		printf '#!/bin/sh\nexit 101\n' | run "${SUDO[@]}" tee "$POLICY_RC"
		run "${SUDO[@]}" chmod 755 "$POLICY_RC"
		POLICY_RC_OURS=1
	fi
	run "${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=900 update -q
	say "ran apt-get update"
	run "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends "${missing[@]}"
	say "installed: ${missing[*]}"
else
	say "all packages already installed: ${PACKAGES[*]}"
fi

# Stop and disable the system services. Each step is allowed to fail: the
# machine may have no init system at all.
have_systemd() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

for svc in "${SERVICES[@]}"; do
	[[ -e /etc/init.d/$svc || -e /lib/systemd/system/$svc.service ]] || continue
	if have_systemd; then
		if systemctl is-active --quiet "$svc" 2>/dev/null; then
			"${SUDO[@]}" systemctl stop "$svc" >>"$LOG" 2>&1 && say "stopped service $svc" || true
		fi
		if systemctl is-enabled --quiet "$svc" 2>/dev/null; then
			"${SUDO[@]}" systemctl disable "$svc" >>"$LOG" 2>&1 && say "disabled service $svc" || true
		fi
	else
		if "${SUDO[@]}" service "$svc" status >/dev/null 2>&1; then
			{ "${SUDO[@]}" service "$svc" stop >>"$LOG" 2>&1 ||
				"${SUDO[@]}" invoke-rc.d "$svc" stop >>"$LOG" 2>&1; } &&
				say "stopped service $svc" || true
		fi
		if compgen -G "/etc/rc[2-5].d/S*$svc" >/dev/null; then
			"${SUDO[@]}" update-rc.d "$svc" disable >>"$LOG" 2>&1 && say "disabled service $svc" || true
		fi
	fi
done
