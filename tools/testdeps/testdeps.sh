#!/bin/sh
# testdeps makes sure the programs the tests drive are installed: the tests
# fail, never skip, when one is missing. `make test` runs it first. As root
# on a machine with apt-get it installs the missing packages (server
# packages are kept from starting as services by a policy-rc.d that exits
# 101); otherwise it stops at once and prints the one command to run.
set -eu

# command the tests run -> the Debian package that has it
need=""
check() {
	command -v "$1" >/dev/null 2>&1 || case " $need " in
		*" $2 "*) ;;
		*) need="$need $2" ;;
	esac
}
check dig bind9-dnsutils             # wire and end-to-end tests
check delv bind9-dnsutils            # DNSSEC validation
check dnstap-read bind9-dnsutils     # reads back the dnstap output
check dnssec-keygen bind9-utils      # DNSSEC test keys
check unbound unbound                # a real resolver in front of gslbd
check chromium chromium              # the status page, headless
check systemd-analyze systemd        # verifies contrib/systemd/gslbd.service
need=${need# }
[ -z "$need" ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
	echo "testdeps: installing $need"
	# Server packages (unbound) must never start as system services here.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
		chmod +x /usr/sbin/policy-rc.d
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	# With recommends: chromium needs them (fonts) to render headless.
	# shellcheck disable=SC2086 # the package list is split on purpose
	apt-get install -y -q $need
	exit 0
fi
echo "testdeps: the tests need these packages: $need" >&2
echo "install them with:" >&2
echo "  sudo sh -c 'printf \"#!/bin/sh\\\\nexit 101\\\\n\" > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; apt-get update && apt-get install -y $need'" >&2
exit 1
