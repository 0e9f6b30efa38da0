#!/usr/bin/env bash
# BitTorrent metainfo interop: torrents made by mktorrent and transmission-create parse with
# `servent torrent show` and give the info-hash that transmission-show and libtorrent report;
# torrents made by `servent torrent create` (single file, multi-file with nested folders,
# several tracker tiers, private, a fixed piece size) are accepted by transmission-show and
# libtorrent with our info-hash, name, piece count and size.
#
# Standalone: `sudo SERVENT=target/release/servent scripts/interop.d/50-bittorrent-files.sh`,
# or `scripts/interop bittorrent-files`. Each check prints PASS or FAIL; exits 0 only when
# every check held.
# needs: mktorrent transmission-cli python3-libtorrent
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
SERVENT=${SERVENT:-$root/target/release/servent}
WORK=${WORK:-$(mktemp -d)}
[ -x "$SERVENT" ] || { echo "no servent binary at $SERVENT" >&2; exit 1; }
for c in mktorrent transmission-create transmission-show /usr/bin/python3; do
  command -v "$c" >/dev/null || { echo "missing $c" >&2; exit 1; }
done

fails=0
check() { # NAME CMD...: run CMD, print PASS/FAIL NAME
  local name=$1; shift
  if "$@"; then echo "PASS $name"; else echo "FAIL $name"; fails=$((fails + 1)); fi
}

# What each tool reports, as "hash name pieces piece_length total_size" lines.
ours() {
  "$SERVENT" torrent show "$1" | awk '
    /^name:/ { sub(/^name: +/, ""); name = $0 }
    /^info-hash:/ { hash = $2 }
    /^size:/ { gsub(/[()]/, ""); size = $(NF - 1) }
    /^pieces:/ { count = $2 }
    END { print hash, name, count, size }'
}
transmission() {
  transmission-show "$1" | awk '
    /^  Name:/ { sub(/^  Name: /, ""); name = $0 }
    /^  Hash:/ { hash = $2 }
    /^  Piece Count:/ { count = $3 }
    END { print hash, name, count }'
}
libtorrent() {
  /usr/bin/python3 - "$1" <<'PY'
import sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
print(str(ti.info_hashes().v1), ti.name(), ti.num_pieces(), ti.total_size())
PY
}
# The first three fields (hash, name, pieces) must agree; libtorrent also gives the size.
same3() { [ -n "$1" ] && [ "$(echo "$1" | cut -d' ' -f1-3)" = "$(echo "$2" | cut -d' ' -f1-3)" ]; }
same4() { [ -n "$1" ] && [ "$1" = "$2" ]; }

mkdir -p "$WORK/c/multi/sub/deeper" "$WORK/t"
cd "$WORK/c"
head -c 1000000 /dev/urandom > multi/a.bin
head -c 333333 /dev/urandom > multi/sub/b.txt
head -c 70000 /dev/urandom > "multi/sub/deeper/c d.dat"   # a space in a name
head -c 17 /dev/urandom > multi/tiny
head -c 3000000 /dev/urandom > single.bin
T=http://127.0.0.1:6969/announce

# 1. Torrents made by others, parsed by us.
mktorrent -a "$T" -o "$WORK/t/mk-multi.torrent" multi >/dev/null
mktorrent -a "$T" -a udp://127.0.0.1:6969 -l 15 -o "$WORK/t/mk-single.torrent" single.bin >/dev/null
mktorrent -p -a "$T" -o "$WORK/t/mk-private.torrent" multi >/dev/null
transmission-create -t "$T" -o "$WORK/t/tc-multi.torrent" multi >/dev/null
transmission-create -p -t "$T" -t udp://127.0.0.1:6969 -s 64 -o "$WORK/t/tc-single.torrent" single.bin >/dev/null
for t in mk-multi mk-single mk-private tc-multi tc-single; do
  f="$WORK/t/$t.torrent"
  o=$(ours "$f" 2>&1); tr=$(transmission "$f"); lt=$(libtorrent "$f")
  echo "  $t: servent [$o] transmission [$tr] libtorrent [$lt]"
  check "servent parses $t.torrent with transmission-show's info-hash, name and piece count" same3 "$o" "$tr"
  check "servent parses $t.torrent with libtorrent's info-hash, name, piece count and size" same4 "$o" "$lt"
done
check "servent lists both trackers of mk-single.torrent" \
  bash -c "'$SERVENT' torrent show '$WORK/t/mk-single.torrent' | grep -q 'udp://127.0.0.1:6969'"
check "servent reports tc-single.torrent as private" \
  bash -c "'$SERVENT' torrent show '$WORK/t/tc-single.torrent' | grep -q '^private: *yes'"

# 2. Torrents made by us, read by them.
"$SERVENT" torrent create multi -t "$T" --torrent-file "$WORK/t/sv-multi.torrent" >/dev/null
"$SERVENT" torrent create single.bin -t "$T" -t udp://127.0.0.1:6969 --piece-size 32K \
  --torrent-file "$WORK/t/sv-single.torrent" >/dev/null
"$SERVENT" torrent create multi -t "$T,http://127.0.0.2:6969/announce" -t udp://127.0.0.1:6969 \
  --private --comment "made by servent" --torrent-file "$WORK/t/sv-private.torrent" >/dev/null
for t in sv-multi sv-single sv-private; do
  f="$WORK/t/$t.torrent"
  o=$(ours "$f" 2>&1); tr=$(transmission "$f" 2>&1); lt=$(libtorrent "$f" 2>&1)
  echo "  $t: servent [$o] transmission [$tr] libtorrent [$lt]"
  check "transmission-show accepts $t.torrent with our info-hash, name and piece count" same3 "$o" "$tr"
  check "libtorrent accepts $t.torrent with our info-hash, name, piece count and size" same4 "$o" "$lt"
done
# A single file with the same piece size and no optional info keys: our info dictionary is
# byte for byte mktorrent's (same keys, same canonical encoding), so the info-hash is the same.
check "our single-file torrent has mktorrent's info-hash for the same file and piece size" \
  same4 "$(ours "$WORK/t/sv-single.torrent" | cut -d' ' -f1)" "$(ours "$WORK/t/mk-single.torrent" | cut -d' ' -f1)"
show=$(transmission-show "$WORK/t/sv-private.torrent")
check "transmission-show sees sv-private.torrent as private" grep -q "Privacy: Private torrent" <<<"$show"
check "transmission-show sees two tracker tiers in sv-private.torrent" \
  bash -c "grep -q 'Tier #2' <<<\"\$1\" && grep -q 'udp://127.0.0.1:6969' <<<\"\$1\"" _ "$show"
check "transmission-show lists every file of sv-multi.torrent" bash -c \
  "transmission-show '$WORK/t/sv-multi.torrent' | grep -c '^  multi/' | grep -qx 4"
# mktorrent and transmission-create hash the same folder: with the same piece size the
# info dictionaries differ only in optional keys, but the pieces must be identical. A 32 KiB
# torrent from each tool and from us must have the same piece hashes (libtorrent reads them).
mktorrent -a "$T" -l 15 -o "$WORK/t/mk-32k.torrent" multi >/dev/null
"$SERVENT" torrent create multi -t "$T" --piece-size 32K --torrent-file "$WORK/t/sv-32k.torrent" >/dev/null
pieces() {
  /usr/bin/python3 - "$1" <<'PY'
import sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
print(''.join(str(ti.hash_for_piece(i)) for i in range(ti.num_pieces())))
PY
}
check "our piece hashes equal mktorrent's for the same folder and piece size" \
  same4 "$(pieces "$WORK/t/sv-32k.torrent")" "$(pieces "$WORK/t/mk-32k.torrent")"

echo "bittorrent-files: $fails failed"
[ $fails = 0 ]
