# cargo xtask bench overhead (run by the lab's /init after the fs-dax
# mount): the helpers the rounds use; xtask/src/bench/mod.rs appends the
# warm-up and the rounds (bench_put, rw_start, rw_stop lines).
B=/out/bench
mkdir -p $B
# bench_put NAME TARGET SECS
bench_put() {
    workload bench-put --target $2 --secs $3 --dir /mnt/dax --out $B/$1.json > $B/$1.out 2>&1
    rc=$?
    echo $rc > $B/$1.rc
    [ $rc = 0 ] || fail "workload bench-put $1 failed (exit $rc): $(grep -v '^workload note' $B/$1.out | tail -n 1)"
    say "bench $1: $(grep '^bench-put:' $B/$1.out | tail -n 1 | sed 's/.*: //') (uptime $(up) s)"
}
# cpu_sample LABEL: refwatch's CPU time so far, appended to $B/$RWN.cpu as
# "LABEL NS TICKS STIME". NS: the first field (ns on a CPU) of each of its threads'
# /proc/PID/task/TID/schedstat, summed ("-" without CONFIG_SCHED_INFO); on
# the instruction clock a guest ns is a guest instruction. TICKS: utime +
# stime of /proc/PID/stat (clock ticks of 10 ms, exited threads included), a
# coarse cross-check of NS. Sampled here rather than by getrusage after a
# wait4: the two samples bracket the attached run (ready to just before
# SIGINT), leaving out start-up (BTF, symbols, attach) and shutdown, which
# an exit's rusage includes; and schedstat counts ns where the ticks count
# 10 M instructions, a tenth of the budget of a 100k-event run. STIME: the
# stime part of TICKS (the kernel's work on refwatch's behalf: ring wake-ups,
# polls, writes of the recording), which splits the reader's cost.
cpu_sample() {
    ns=0
    for f in /proc/$RW/task/*/schedstat; do
        if [ -r $f ] && read t rest < $f; then ns=$((ns + t)); else ns=-; break; fi
    done
    ticks=$(sed 's/.*) //' /proc/$RW/stat | awk '{ print $12 + $13, $13 }')
    echo "$1 $ns $ticks" >> $B/$RWN.cpu
}
# rw_start NAME [watch]: refwatch record in the background, until its ready
# file exists; with "watch", also --watch new, and the workload (bench_put
# dax-watch) waits until refwatch lists @WATCH_PAGES@ pages armed.
rw_start() {
    RWN=$1
    rm -f @REC@ @READY@
    W=""
    if [ "$2" = watch ]; then
        rm -f $B/$RWN.watch
        W="--watch new --watch-ready $B/$RWN.watch"
        export WATCH_READY=$B/$RWN.watch WATCH_PAGES=@WATCH_PAGES@
    fi
    refwatch record -o @REC@ --ready-file @READY@ --log-file $B/$RWN.log --summary-secs 0@EXTRA@ $W > $B/$RWN.out 2>&1 &
    RW=$!
    n=0
    while [ ! -e @READY@ ]; do
        if ! kill -0 $RW 2>/dev/null; then
            wait $RW
            fail "refwatch record for $RWN exited before ready (exit $?): $(tail -n 1 $B/$RWN.out)"
        fi
        n=$((n + 1))
        [ $n -gt @READY_TICKS@ ] && fail "refwatch record for $RWN not ready after @READY_SECS@ s"
        usleep 100000
    done
    rm -f $B/$RWN.cpu
    cpu_sample ready
}
# rw_stop: refwatch's CPU time, SIGINT, wait (SIGKILL after @STOP_SECS@ s), keep the recording's last line
rw_stop() {
    cpu_sample stop
    kill -INT $RW 2>/dev/null
    note=""
    n=0
    while kill -0 $RW 2>/dev/null; do
        n=$((n + 1))
        if [ $n -gt @STOP_TICKS@ ]; then
            kill -KILL $RW 2>/dev/null
            note="SIGKILL after @STOP_SECS@ s"
            break
        fi
        usleep 100000
    done
    wait $RW
    rc=$?
    unset WATCH_READY WATCH_PAGES
    echo $rc > $B/$RWN.rc
    [ -n "$note" ] && echo "note: $note" >> $B/$RWN.rc
    tail -n 1 @REC@ > $B/$RWN.end 2>/dev/null
    wc -c < @REC@ > $B/$RWN.size 2>/dev/null
    rm -f @REC@ @READY@
    say "bench $RWN: refwatch rc $rc${note:+ ($note)}, $(cut -c1-100 $B/$RWN.end) (uptime $(up) s)"
}
say "bench: warm-up (uptime $(up) s)"
