# Puts a new null-client configuration in place, or none of it.
#
# The deploy sends this file on stdin to `sh -s`, followed by generated lines that set
# reload_command, restart_command, enabled_test and enable_command, call stage_file for each
# changed file and end with `apply reload|restart MAP...`. File contents travel inside stdin
# only: no command line, no temporary file outside a root-only directory. If `postfix check` or
# postfix's (re)start fails, the previous files are put back, postfix keeps running with them,
# and this exits 1.
set -eu
umask 077
conf=/etc/postfix
originals=/var/lib/postfix-nullclient/original

# Interrupted deploys. pyinfra killed or the connection cut must not stop this script half-way: it
# reads all of its stdin before it runs (the deploy wraps it in { }), then ignores the hang-up and
# the closed pipe and runs to its end, writing to a gone connection in vain. A staging directory
# that a run killed on the host left behind (it holds a password) goes at the next run. A run killed
# between moving files in and postfix's reload leaves $pending behind: the deploy's fact sees it and
# applies and restarts again. ($pending is set by the deploy's generated lines.)
outlive_the_connection() {
  trap '' HUP PIPE
  trap 'exit 1' INT TERM
  for left in "$conf"/.nullclient.*; do
    if [ -d "$left" ]; then rm -rf "$left"; fi
  done
}
outlive_the_connection

stage=$(mktemp -d "$conf/.nullclient.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/new" "$stage/old"
staged=""

say() { echo "postfix-nullclient: $*" >&2 || true; }

# Every Postfix tool re-reads a main.cf changed less than a second ago until it settles: 2 s at the
# first command after the change. A staged file is whole before it moves into place, so it is dated
# two seconds back.
settled="@$(( $(date +%s) - 2 ))"

stage_file() {  # NAME MODE BASE64-CONTENT
  printf '%s' "$3" | base64 -d > "$stage/new/$1"
  touch -d "$settled" "$stage/new/$1"
  chown root:root "$stage/new/$1"
  chmod "$2" "$stage/new/$1"
  staged="$staged $1"
}

database_suffix() {
  case "$(postconf -h default_database_type)" in lmdb) echo lmdb ;; cdb) echo cdb ;; *) echo db ;; esac
}

make_maps() {  # MAP...: databases are root-only from their first byte (umask) and stay so
  [ $# -gt 0 ] || return 0
  suffix=$(database_suffix)
  for name in "$@"; do
    [ -f "$conf/$name" ] || continue
    postmap "$conf/$name" || return 1
    chown root:root "$conf/$name.$suffix"
    chmod 0600 "$conf/$name.$suffix"
  done
}

keep_original() {  # NAME: what was there before the first deploy, for a later removal to restore
  if [ -e "$originals/$1" ] || [ -e "$originals/$1.absent" ]; then return 0; fi
  mkdir -p "$originals"
  if [ -e "$conf/$1" ]; then cp -p "$conf/$1" "$originals/$1"; else : > "$originals/$1.absent"; fi
}

install_staged() {
  for name in $staged; do
    keep_original "$name"
    # A hard link keeps the old file for a rollback without a moment of it missing.
    if [ -e "$conf/$name" ]; then ln -f "$conf/$name" "$stage/old/$name"; fi
    mv -f "$stage/new/$name" "$conf/$name"
  done
}

restore_previous() {  # MAP...
  for name in $staged; do
    if [ -e "$stage/old/$name" ]; then mv -f "$stage/old/$name" "$conf/$name"; else rm -f "$conf/$name"; fi
  done
  make_maps "$@" || say "could not rebuild the maps of the previous configuration"
  rm -f "$pending"  # interrupted deploys: the previous configuration is whole again
}

postfix_check() {
  # `postfix check` reports to stderr only when that is a terminal (else only to the mail log):
  # give it one, so that the deploy can say what is wrong.
  if command -v script >/dev/null 2>&1; then
    rc=0
    out=$(script -qec "postfix check" /dev/null </dev/null 2>&1) || rc=$?
    printf '%s\n' "$out" | tr -d '\r'
    return $rc
  fi
  postfix check 2>&1
}

check_ca_file() {  # postfix check does not look at it; without it, no TLS, so no mail at all
  ca_file=$(postconf -h smtp_tls_CAfile)
  if [ -n "$ca_file" ] && [ ! -r "$ca_file" ]; then
    echo "ca_file: the CA bundle $ca_file (smtp_tls_CAfile) does not exist on this host"
    return 1
  fi
}

postfix_running() {  # postfix's master may need a moment after systemctl returns
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    postfix status >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

apply() {  # reload|restart MAP...
  action=$1
  shift
  was_running=no
  # Without a main.cf every Postfix tool fails, and only after a second's pause: do not ask.
  [ -e "$conf/main.cf" ] && postfix status >/dev/null 2>&1 && was_running=yes
  mkdir -p "${pending%/*}" && : > "$pending"  # interrupted deploys: from here until the reload
  install_staged
  if ! make_maps "$@"; then
    restore_previous "$@"
    say "postmap failed; the previous configuration was restored"
    exit 1
  fi
  if ! check_output=$(postfix_check); then
    restore_previous "$@"
    say "postfix check failed, the previous configuration was restored and stays live:"
    echo "$check_output" >&2
    exit 1
  fi
  if [ -n "$check_output" ]; then say "$check_output"; fi
  if ! ca_problem=$(check_ca_file); then
    restore_previous "$@"
    say "$ca_problem; the previous configuration was restored and stays live"
    exit 1
  fi
  if [ "$action" = reload ] && [ "$was_running" = yes ]; then
    $reload_command
  else
    $restart_command || true
  fi
  if ! postfix_running; then
    restore_previous "$@"
    if [ "$was_running" = yes ]; then $restart_command || true; fi
    say "postfix did not start with the new configuration; the previous one was restored"
    exit 1
  fi
  # The package install may have enabled it since the deploy looked; enabling costs seconds.
  $enabled_test || $enable_command
  rm -f "$pending"  # interrupted deploys: the new configuration is whole and live
  if [ -n "$staged" ]; then echo "postfix-nullclient: installed$staged; postfix ${action}ed" || true; fi
}
