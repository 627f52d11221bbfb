#!/bin/bash
# strace of the server's reads under two floods (run under flock /tmp/bench.lock)
cd /work/wt-flood
PORT=17400; APORT=17401
for kind in unpaced deep; do
  taskset -c 0 .venv/bin/python -m presenced serve --port $PORT --admin-port $APORT --grace 5 --inactivity-timeout off --log-level warning > /tmp/flood-strace-server.log 2>&1 &
  SPID=$!
  sleep 2
  echo "== $kind: server pid $SPID; flooder: python -m bench.loadgen.hostile --kind $kind --conns 1 --seconds 6 (taskset -c 1)"
  (echo go | taskset -c 1 .venv/bin/python -m bench.loadgen.hostile --url ws://127.0.0.1:$PORT --kind $kind --conns 1 --seconds 6 > /tmp/flood-strace-$kind.out 2>&1) &
  sleep 2
  timeout 3 strace -p $SPID -e trace=read,recvfrom,readv,write,writev,epoll_wait -tt -T -q -o /tmp/flood-strace-$kind.txt
  sleep 5
  kill $SPID; wait $SPID
  echo "syscalls in 3 s of strace:"; awk '{print $2}' /tmp/flood-strace-$kind.txt | cut -d'(' -f1 | sort | uniq -c
  echo "largest reads (bytes):"; grep -E "^[0-9:.]+ (read|recvfrom)\(" /tmp/flood-strace-$kind.txt | sed -E 's/.*= ([0-9]+) <.*/\1/' | sort -n | tail -5 | tr '\n' ' '; echo
  echo "longest gaps between two syscalls (s):"
  awk '{split($1,t,":"); s=t[1]*3600+t[2]*60+t[3]; if (p) printf "%.3f\n", s-p; p=s}' /tmp/flood-strace-$kind.txt | sort -n | tail -5 | tr '\n' ' '; echo
done
