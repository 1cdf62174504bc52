# Takes the null client off a host. Sent on stdin to `sh -s` by nullclient/remove.py, followed by
# lines that set `mode` (stop or purge), `init` (systemd or openrc), `purge_command` and `files`.
#
# Order: postfix stops first, so that it never runs on half-restored files; then the password map
# and its databases go; then the files that were there before the first deploy come back (kept by
# tasks/apply_config.sh keep_original); last the record of them goes, so that a later deploy
# starts again from this state.
set -eu
conf=/etc/postfix
originals=/var/lib/postfix-nullclient/original

say() { echo "postfix-nullclient: $*"; }

# The deploy's record goes, but not mail it held from a replaced mail system and has not sent
# yet (templates/held_mail.sh.j2): that stays, and is named.
forget_the_record() {
  held=/var/lib/postfix-nullclient/held
  count=0
  for file in "$held"/*; do [ -f "$file" ] && count=$((count + 1)); done
  if [ "$count" -eq 0 ]; then
    rm -rf /var/lib/postfix-nullclient
    return 0
  fi
  rm -rf "$originals" /var/lib/postfix-nullclient/applying
  say "warning: $count message(s) held from the mail system the deploy replaced were never sent; they stay in $held"
}

remove_null_client() {
  queued=$(postqueue -j 2>/dev/null | wc -l || echo 0)
  [ "$queued" -gt 0 ] && say "warning: $queued message(s) were still in the queue; they stay in /var/spool/postfix"
  if [ "$init" = systemd ]; then
    systemctl disable --now -q postfix 2>/dev/null || systemctl stop postfix 2>/dev/null || true
  else
    rc-service postfix stop >/dev/null 2>&1 || true
    rc-update -q del postfix default 2>/dev/null || true
  fi
  rm -f "$conf/sasl_passwd" "$conf/sasl_passwd.db" "$conf/sasl_passwd.lmdb" "$conf/sasl_passwd.cdb"
  if [ "$mode" = purge ]; then
    $purge_command
  fi
  restored=""
  for name in $files; do
    if [ -e "$originals/$name" ]; then
      mkdir -p "$conf"
      cp -p "$originals/$name" "$conf/$name"
      restored="$restored $name"
    elif [ -e "$originals/$name.absent" ]; then
      rm -f "$conf/$name"
      restored="$restored $name(absent)"
    fi
  done
  # A password map that was there before the deploy is the owner's own: back, with its database.
  if [ -e "$conf/sasl_passwd" ] && command -v postmap >/dev/null; then
    (umask 077; postmap "$conf/sasl_passwd") || say "warning: could not rebuild the restored sasl_passwd database"
  fi
  forget_the_record
  if [ "$mode" = purge ]; then
    say "postfix purged; password map deleted; restored:${restored:- nothing recorded}"
  else
    say "postfix stopped and disabled; password map deleted; restored:${restored:- nothing recorded}"
  fi
}
