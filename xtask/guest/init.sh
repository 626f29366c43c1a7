#!/bin/sh
# The lab guest's /init (xtask/guest/init.sh): cargo xtask lab fills in the
# placeholders between at signs (xtask/src/lab/guest.rs).
export PATH=/bin:/sbin
say() { echo "LAB: $*"; }
up() { cut -d' ' -f1 /proc/uptime; }
finish() {
    dmesg > /out/dmesg.txt 2>&1
    uname -a > /out/uname.txt 2>&1
    cat /proc/mounts > /out/mounts.txt 2>&1
    cat /proc/iomem > /out/iomem.txt 2>&1
    if [ -b /dev/vda ]; then
        tar -cf /dev/vda -C /out . || say "FAIL: tar to /dev/vda (exit $?)"
    else
        say "FAIL: no /dev/vda for the results"
    fi
    sync
    say "done"
    poweroff -f
    sleep 10
}
fail() {
    say "FAIL: $*"
    echo "$*" > /out/lab-error.txt
    finish
}
# wait_for TEST-ARGS... : up to 10 s for a condition
wait_for() {
    n=0
    while ! test "$@"; do
        n=$((n + 1))
        [ $n -gt 100 ] && return 1
        usleep 100000
    done
    return 0
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /out /tmp /mnt/dax
say "init started, uptime $(up) s, kernel $(uname -r)"
mount -t tracefs tracefs /sys/kernel/tracing || say "warning: cannot mount tracefs"
mount -t debugfs debugfs /sys/kernel/debug || say "warning: cannot mount debugfs"
mount -t bpf bpf /sys/fs/bpf || say "warning: cannot mount bpffs"
# Pseudo-terminals, for the TUI's scenarios (workload pty).
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts || say "warning: cannot mount devpts"

@MODULES@
say "modules loaded (uptime $(up) s)"

wait_for -b /dev/vda || fail "/dev/vda (out disk) did not appear"
wait_for -b /dev/vdb || fail "/dev/vdb (scratch disk) did not appear"
wait_for -b /dev/vdc || fail "/dev/vdc (slow disk) did not appear"
[ "$(cat /sys/block/vda/size)" = "@OUT_SECTORS@" ] || fail "/dev/vda is not the @OUT_MIB@ MiB out disk ($(cat /sys/block/vda/size) sectors)"
[ "$(cat /sys/block/vdb/size)" = "@SCRATCH_SECTORS@" ] || fail "/dev/vdb is not the @SCRATCH_MIB@ MiB scratch disk ($(cat /sys/block/vdb/size) sectors)"
[ "$(cat /sys/block/vdc/size)" = "@SLOW_SECTORS@" ] || fail "/dev/vdc is not the @SLOW_MIB@ MiB slow disk ($(cat /sys/block/vdc/size) sectors)"
# One request per page on the slow disk, so that its write throttle holds
# a multi-page write for seconds (see slow_disk_bps in xtask/src/lab/qemu.rs).
echo @SLOW_KB@ > /sys/block/vdc/queue/max_sectors_kb || fail "cannot limit /dev/vdc to @SLOW_KB@ KiB requests"
[ "$(cat /sys/block/vdc/queue/max_sectors_kb)" = "@SLOW_KB@" ] || fail "/dev/vdc takes requests of $(cat /sys/block/vdc/queue/max_sectors_kb) KiB, not @SLOW_KB@"
wait_for -b /dev/pmem0 || fail "/dev/pmem0 did not appear (memmap=512M!1G, nd_e820, nd_pmem)"
@MKE2FS@ -q -t ext4 -b 4096 -F /dev/pmem0 > /out/mke2fs.txt 2>&1 || fail "mke2fs /dev/pmem0 (exit $?): $(tail -n 2 /out/mke2fs.txt)"
mount -t ext4 -o dax /dev/pmem0 /mnt/dax || fail "mount -o dax /dev/pmem0 (exit $?): $(dmesg | tail -n 2)"
opts=$(awk '$2 == "/mnt/dax" { print $4 }' /proc/mounts)
case ",$opts," in
    *,dax,*|*,dax=always,*) ;;
    *) fail "ext4 on /dev/pmem0 is mounted without DAX (options: $opts)" ;;
esac
if [ -e /sys/block/pmem0/queue/dax ] && [ "$(cat /sys/block/pmem0/queue/dax)" != 1 ]; then
    fail "/dev/pmem0 does not support DAX (queue/dax = $(cat /sys/block/pmem0/queue/dax))"
fi
say "fs-dax ready: /dev/pmem0 on /mnt/dax ($opts)"
# use_fs ext4|xfs: a new file system of that type on /dev/pmem0, mounted
# with DAX on /mnt/dax.
use_fs() {
    umount /mnt/dax || fail "umount /mnt/dax (exit $?)"
    case $1 in
        ext4)
            @MKE2FS@ -q -t ext4 -b 4096 -F /dev/pmem0 > /out/mkfs-$1.txt 2>&1 || fail "mke2fs /dev/pmem0 (exit $?): $(tail -n 2 /out/mkfs-$1.txt)"
            mount -t ext4 -o dax /dev/pmem0 /mnt/dax || fail "mount ext4 -o dax (exit $?): $(dmesg | tail -n 2)" ;;
        xfs)
            @MKFS_XFS@ -q -f -b size=4096 -m reflink=0 /dev/pmem0 > /out/mkfs-$1.txt 2>&1 || fail "mkfs.xfs /dev/pmem0 (exit $?): $(tail -n 2 /out/mkfs-$1.txt)"
            mount -t xfs -o dax=always /dev/pmem0 /mnt/dax || fail "mount xfs -o dax=always (exit $?): $(dmesg | tail -n 2)" ;;
    esac
    opts=$(awk '$2 == "/mnt/dax" { print $3 "," $4 }' /proc/mounts)
    case ",$opts," in
        ,$1,*dax*) ;;
        *) fail "/mnt/dax is not $1 with DAX (mounted: $opts)" ;;
    esac
    say "fs-dax now: $1 on /mnt/dax ($opts)"
}
@HMM_CHECK@
# The page_ref tracepoints through tracefs, independent of refwatch: the
# ground truth for ZONE_DEVICE pages. Device-private PFNs lie above the last
# System RAM range; the fs-dax PFNs of the memmap=512M!1G region lie below
# it (RAM continues above 1.5 GiB), so its "Persistent Memory" ranges are
# added.
T=/sys/kernel/tracing
truth_start() {
    [ -d $T/events/page_ref ] || return 0
    ramend=$(awk '$NF == "RAM" && $(NF-1) == "System" { split($1, a, "-"); e = a[2] } END { print e }' /proc/iomem)
    [ -n "$ramend" ] || { say "warning: no System RAM in /proc/iomem"; return 0; }
    pfns="pfn >= $(( (0x$ramend + 1) >> 12 ))"
    for r in $(awk '/: Persistent Memory/ { print $1 }' /proc/iomem); do
        pfns="$pfns || (pfn >= $(( 0x${r%-*} >> 12 )) && pfn <= $(( 0x${r#*-} >> 12 )))"
    done
    echo 0 > $T/tracing_on
    echo mono > $T/trace_clock
    echo 16384 > $T/buffer_size_kb
    for e in $T/events/page_ref/page_ref_*; do
        case $e in
            *_unless) echo "($pfns) && ret != 0" > $e/filter ;;
            *) echo "$pfns" > $e/filter ;;
        esac
    done
    echo "$pfns" > $D/page_ref.filter
    echo 1 > $T/events/page_ref/enable
    echo > $T/trace
    echo 1 > $T/tracing_on
    TRUTH=1
}
truth_stop() {
    [ -n "$TRUTH" ] || return 0
    echo 0 > $T/tracing_on
    cat $T/trace > $1/page_ref.trace
    echo 0 > $T/events/page_ref/enable
    TRUTH=""
}

# wait_hold_start FILE: until the workload (job $WL) writes its hold_start
# line to FILE, it exits, or 60 s pass.
wait_hold_start() {
    n=0
    until grep -q "^workload: hold_start " $1 2>/dev/null; do
        kill -0 $WL 2>/dev/null || break
        n=$((n + 1))
        [ $n -gt 1200 ] && break
        usleep 50000
    done
}

# wait_ready: waits for refwatch (job $RW) to write $D/ready; $note says
# why not when it exited first or took longer than @READY_SECS@ s.
wait_ready() {
    note=""
    n=0
    while [ ! -e $D/ready ]; do
        if ! kill -0 $RW 2>/dev/null; then
            note="exited before ready"
            break
        fi
        n=$((n + 1))
        if [ $n -gt @READY_TICKS@ ]; then
            note="not ready after @READY_SECS@ s"
            break
        fi
        usleep 100000
    done
}

# refwatch_start S F: refwatch records scenario S with the extra flags F
# into D=/out/S and is waited for until ready. Leaves RW (its pid, empty
# when it already exited) and note (why it is not ready) for refwatch_stop.
refwatch_start() {
    S=$1
    F=$2
    D=/out/$S
    mkdir -p $D
    J="--jsonl $D/events.jsonl"
    [ -n "$NO_LIVE_JSONL" ] && J=""
    say "scenario $S start (uptime $(up) s)"
    @REFWATCH@ &
    RW=$!
    wait_ready
    if [ -n "$note" ]; then
        say "scenario $S: refwatch $note (uptime $(up) s)"
    else
        say "scenario $S: refwatch ready (uptime $(up) s)"
    fi
    if [ "$note" = "exited before ready" ]; then
        wait $RW
        echo $? > $D/refwatch.rc
        echo "note: $note" >> $D/refwatch.rc
        RW=""
    fi
}
# refwatch_stop [SIG]: SIG (default INT) to refwatch, SIGKILL after
# @STOP_SECS@ s (with a note); its exit code (and any note) into
# $D/refwatch.rc. Leaves SENT and EXITED, the guest uptime when the signal
# was sent and when refwatch was gone, and ENDED, when the recording's end
# line was first seen (polled every 0.1 s; "-": not before the exit).
refwatch_stop() {
    [ -n "$RW" ] || return 0
    SENT=$(up)
    kill -${1:-INT} $RW 2>/dev/null
    ENDED=-
    n=0
    while kill -0 $RW 2>/dev/null; do
        if [ $ENDED = - ] && tail -c 300 $D/recording 2>/dev/null | grep -q '"type":"end"'; then
            ENDED=$(up)
        fi
        n=$((n + 1))
        if [ $n -gt @STOP_TICKS@ ]; then
            kill -KILL $RW 2>/dev/null
            note="${note:+$note; }SIGKILL after @STOP_SECS@ s"
            break
        fi
        usleep 100000
    done
    EXITED=$(up)
    wait $RW
    echo $? > $D/refwatch.rc
    [ -n "$note" ] && echo "note: $note" >> $D/refwatch.rc
    RW=""
}

@HMM_WATCH@
# run_scenario S W F [PAGES [HOLD [late]]]: workload W under refwatch
# (flags F), with the page_ref ground truth; with "late", refwatch starts
# only once the workload holds its references, as a user attaches after
# the hang (the workload holds on for a while after refwatch is ready:
# ATTACH_READY names refwatch's ready file). With "late" and WATCH_CMD
# set, `refwatch watch` on the first held PFN runs beside it once it is
# ready, until the end: its lines in
# $D/watch-cmd.out, its armed page in $D/watch-ready (which the workload
# waits for), its exit code in $D/watch-cmd.rc.
run_scenario() {
    W=$2
    P=${4:-@PAGES@}
    H=${5:-@HOLD@}
    LATE=$6
    case $W in
        @SLOW_SCENARIOS@) B=/dev/vdc ;;
        *) B=/dev/vdb ;;
    esac
    if [ -n "$LATE" ]; then
        mkdir -p /out/$1
        ATTACH_READY=/out/$1/ready workload $W --dir /mnt/dax --pages $P --hold-secs $H --bdev $B --out /out/$1/workload.json > /out/$1/workload.out 2>&1 &
        WL=$!
        wait_hold_start /out/$1/workload.out
        say "scenario $1: the workload holds, refwatch starts (uptime $(up) s)"
    fi
    refwatch_start $1 "$3"
    if [ -n "$LATE" ] && [ -n "$WATCH_CMD" ]; then
        watch_cmd_start /out/$1
    fi
    if [ -z "$LATE" ]; then
        truth_start
        workload $W --dir /mnt/dax --pages $P --hold-secs $H --bdev $B --out $D/workload.json > $D/workload.out 2>&1 &
        WL=$!
    fi
    # During a hold, keep a copy of the recording as it stands then (it is
    # flushed every second), for `refwatch report --fail-on-stuck`.
    n=0
    while kill -0 $WL 2>/dev/null; do
        if [ -e $D/recording ] && grep -q "^workload: hold_start " $D/workload.out; then
            sleep @SNAP@
            cp $D/recording $D/recording.during-hold
            say "scenario $S: recording copied during the hold (uptime $(up) s)"
            break
        fi
        n=$((n + 1))
        [ $n -gt 1200 ] && break
        usleep 50000
    done
    wait $WL
    wrc=$?
    echo $wrc > $D/workload.rc
    sleep 1
    truth_stop $D
    refwatch_stop
    if [ -n "$WC" ]; then
        kill -INT $WC 2>/dev/null
        wait $WC
        echo $? > $D/watch-cmd.rc
        WC=
    fi
    say "scenario $S end: workload rc $wrc, refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}

# watch_cmd_start D: `refwatch watch` on the first PFN the workload (output
# in D/workload.out) holds, as a user names a page to watch; returns once
# it says the page is armed (at most 120 s), leaving its pid in WC.
watch_cmd_start() {
    P1=$(grep "^workload: pfns " $1/workload.out | cut -d' ' -f3)
    refwatch watch $P1 --watch-ready $1/watch-ready > $1/watch-cmd.out 2>&1 &
    WC=$!
    n=0
    until grep -q "watching page $P1 " $1/watch-cmd.out; do
        n=$((n + 1))
        if [ $n -gt 1200 ] || ! kill -0 $WC 2>/dev/null; then
            say "refwatch watch $P1 did not arm its page (uptime $(up) s)"
            return
        fi
        usleep 100000
    done
    say "refwatch watch $P1 armed (uptime $(up) s)"
}

# scrape FILE: refwatch's metrics endpoint into FILE (busybox wget: any
# answer but 200 fails).
scrape() {
    wget -q -O $1 http://127.0.0.1:@METRICS_PORT@/metrics || say "warning: scrape into $1 failed (exit $?)"
}
# run_metrics S W F: workload W under refwatch (flags F, with --metrics on
# 127.0.0.1:@METRICS_PORT@), in the cgroup @METRICS_CGROUP@ (named as docker
# names a container's) from its start. During the hold the endpoint is
# scraped into $D/metrics.during-hold, and right after the recording and the
# JSON lines are copied (*.during-hold); once the workload ended and refwatch
# had two ticks, scraped again into $D/metrics.after.
run_metrics() {
    ifconfig lo 127.0.0.1 up || say "warning: cannot bring lo up"
    C=/sys/fs/cgroup
    grep -q " $C cgroup2 " /proc/mounts || mount -t cgroup2 cgroup2 $C || say "warning: cannot mount cgroup2 on $C"
    G=$C@METRICS_CGROUP@
    mkdir -p $G || say "warning: cannot create $G"
    refwatch_start $1 "$3"
    sh -c "echo \$\$ > $G/cgroup.procs && exec workload $2 --dir /mnt/dax --pages @PAGES@ --hold-secs @HOLD@ --bdev /dev/vdb --out $D/workload.json" > $D/workload.out 2>&1 &
    WL=$!
    wait_hold_start $D/workload.out
    sleep @SNAP@
    scrape $D/metrics.during-hold
    cp $D/recording $D/recording.during-hold
    cp $D/events.jsonl $D/events.during-hold.jsonl
    say "scenario $S: scraped during the hold (uptime $(up) s)"
    wait $WL
    wrc=$?
    echo $wrc > $D/workload.rc
    sleep 2
    scrape $D/metrics.after
    refwatch_stop
    say "scenario $S end: workload rc $wrc, refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}

# run_filtered S W F BY HOLD: workload W holding its pages for HOLD s;
# once it holds, refwatch starts with flags F and a filter (BY "pfn": the
# first half of the workload's PFNs, at most 8; "pid": the workload's
# process; "cgroup": a cgroup v2 the workload is moved into), and a second workload (dax-splice, other pages, another
# process) runs under it, whose events the filter must leave out. The
# filter flags go into $D/filter.flags, the second workload's account into
# $D/other.json.
run_filtered() {
    S=$1
    FLAGS=$3
    BY=$4
    D=/out/$S
    mkdir -p $D
    workload $2 --dir /mnt/dax --pages @PAGES@ --hold-secs $5 --bdev /dev/vdb --out $D/workload.json > $D/workload.out 2>&1 &
    WL=$!
    wait_hold_start $D/workload.out
    case $BY in
        pfn)
            set -- $(grep "^workload: pfns " $D/workload.out | cut -d' ' -f3-)
            half=$(( $# / 2 ))
            [ $half -gt 8 ] && half=8
            [ $half -lt 1 ] && half=1
            list=""
            while [ $half -gt 0 ] && [ $# -gt 0 ]; do
                list="${list:+$list,}$1"
                shift
                half=$((half - 1))
            done
            FF="--pfn=$list" ;;
        cgroup)
            # The workload moves into a cgroup of its own; the second one
            # stays in the root cgroup.
            C=/sys/fs/cgroup
            grep -q " $C cgroup2 " /proc/mounts || mount -t cgroup2 cgroup2 $C || say "warning: cannot mount cgroup2 on $C"
            mkdir -p $C/refwatch-lab
            echo $WL > $C/refwatch-lab/cgroup.procs || say "warning: cannot move the workload into $C/refwatch-lab"
            FF="--cgroup=$C/refwatch-lab" ;;
        *) FF="--pid=$WL" ;;
    esac
    echo "$FF" > $D/filter.flags
    say "scenario $S: the workload holds, refwatch starts with $FF (uptime $(up) s)"
    refwatch_start $S "$FLAGS $FF"
    workload dax-splice --dir /mnt/dax --pages @PAGES@ --hold-secs 0 --bdev /dev/vdb --out $D/other.json > $D/other.out 2>&1
    echo $? > $D/other.rc
    wait $WL
    wrc=$?
    echo $wrc > $D/workload.rc
    sleep 1
    refwatch_stop
    say "scenario $S end: workload rc $wrc, other rc $(cat $D/other.rc), refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}
# run_tui S W F HOLD COLS ROWS [live]: refwatch's TUI (refwatch attach,
# flags F) on a COLS x ROWS pseudo-terminal (workload pty, which captures
# what it draws into $D/tui.capture) while workload W holds its pages for
# HOLD s. Once the hold is over and the screen has had 2 s to show it, q is
# typed into the terminal, as a user quits; refwatch's exit code goes to
# $D/refwatch.rc, the workload's pid to $D/workload.pid. With "live" the
# terminal is also shown on the console, between the lines "tui live
# begin" and "tui live end", and what comes from the console typed into it
# (the demo): nothing else is printed on the console meanwhile.
run_tui() {
    S=$1
    F=$3
    D=/out/$S
    LIVE=$7
    mkdir -p $D
    say "scenario $S start (uptime $(up) s)"
    if [ -n "$LIVE" ]; then
        # A job in the background reads /dev/null unless told otherwise.
        printk=$(cut -f1 /proc/sys/kernel/printk)
        echo 1 > /proc/sys/kernel/printk
        say "tui live begin"
        workload pty --cols $5 --rows $6 --capture $D/tui.capture --keys-file $D/keys --quit-file $D/quit --passthrough -- @ATTACH@ < /dev/console 2> $D/pty.err &
    else
        workload pty --cols $5 --rows $6 --capture $D/tui.capture --keys-file $D/keys --quit-file $D/quit -- @ATTACH@ > $D/pty.out 2> $D/pty.err &
    fi
    RW=$!
    wait_ready
    ready_at=$(up)
    wrc=-
    if [ -z "$note" ]; then
        workload $2 --dir /mnt/dax --pages @PAGES@ --hold-secs $4 --bdev /dev/vdb --out $D/workload.json > $D/workload.out 2>&1 &
        WL=$!
        echo $WL > $D/workload.pid
        # Watch the selected page (the first stuck one) with a hardware
        # watchpoint, as a user presses w, once the hold is flagged.
        sleep 3
        printf w > $D/keys.new && mv $D/keys.new $D/keys
        wait $WL
        wrc=$?
        echo $wrc > $D/workload.rc
        sleep 2
    fi
    touch $D/quit
    wait $RW
    echo $? > $D/refwatch.rc
    [ -n "$note" ] && echo "note: $note" >> $D/refwatch.rc
    if [ -n "$LIVE" ]; then
        say "tui live end"
        echo $printk > /proc/sys/kernel/printk
    fi
    say "scenario $S: refwatch ${note:-ready} (uptime $ready_at s)"
    say "scenario $S end: workload rc $wrc, refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}
# run_selftests S F: the kernel's HMM selftests (/bin/@HMM_TESTS@, the
# kselftest harness) under refwatch (flags F) instead of a workload, killed
# after @SUITE_SECS@ s. Each output line is kept with the uptime it was
# read at (the harness flushes every line) in $D/selftest.out, so the
# checks can tell which test ran when; the exit code goes to selftest.rc.
run_selftests() {
    NO_LIVE_JSONL=1
    refwatch_start $1 "$2"
    NO_LIVE_JSONL=
    { timeout @SUITE_SECS@ @HMM_TESTS@@EXCLUDED@; echo $? > $D/selftest.rc; } 2>&1 |
        while IFS= read -r line; do
            read t rest < /proc/uptime
            echo "$t $line"
        done > $D/selftest.out
    src=$(cat $D/selftest.rc)
    sleep 1
    refwatch_stop
    say "scenario $S end: @HMM_TESTS@ rc $src, $(grep -a '# Totals:' $D/selftest.out | cut -d' ' -f3-), refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}

# bpf_objects DIR: the kernel's lists of what is attached, into DIR:
# bpftool's BPF programs, links and maps (every object the kernel has, by
# id), the registered kprobes and the functions with ftrace callbacks (BPF
# trampolines among them).
bpf_objects() {
    mkdir -p $1
    for k in prog link map; do
        bpftool $k show > $1/$k.txt 2>&1
    done
    cat /sys/kernel/debug/kprobes/list > $1/kprobes.txt 2>&1
    cat $T/enabled_functions > $1/ftrace.txt 2>&1
}
# bpf_held DIR PID: the fdinfo of every file process PID has open, into
# DIR/fdinfo.txt, and "KIND ID" of each BPF program, link and map among
# them into DIR/ids.txt.
bpf_held() {
    for f in /proc/$2/fdinfo/*; do
        echo "== $f"
        cat $f
    done > $1/fdinfo.txt 2>&1
    awk '$1 == "prog_id:" { print "prog", $2 } $1 == "link_id:" { print "link", $2 } $1 == "map_id:" { print "map", $2 }' $1/fdinfo.txt | sort -u > $1/ids.txt
}

# run_signal S W F SIG: workload W under refwatch (flags F) into D=/out/S;
# once the workload holds its references and a second has passed (refwatch
# flushes its recording every second), refwatch_stop SIG, and its times
# into $D/signal.txt ("SIG SENT EXITED ENDED"). For KILL, the kernel's lists
# of what is attached before the kill (bpf-before) and after it
# (bpf-after), taken until none of refwatch's programs, links and maps is
# listed or @RELEASE_SECS@ s have passed; bpf-baseline is from before refwatch
# started.
run_signal() {
    SIG=$4
    D=/out/$1
    [ $SIG = KILL ] && bpf_objects $D/bpf-baseline
    refwatch_start $1 "$3"
    workload $2 --dir /mnt/dax --pages @PAGES@ --hold-secs @HOLD@ --bdev /dev/vdb --out $D/workload.json > $D/workload.out 2>&1 &
    WL=$!
    wait_hold_start $D/workload.out
    sleep 1
    # Under --watch: until refwatch has armed its first pages.
    case "$3" in *--watch-ready*)
        n=0
        until [ -s $D/watch-ready ]; do
            n=$((n + 1))
            [ $n -gt 300 ] && break
            usleep 100000
        done ;;
    esac
    if [ -n "$RW" ]; then
        echo $RW > $D/refwatch.pid
        if [ $SIG = KILL ]; then
            bpf_objects $D/bpf-before
            bpf_held $D/bpf-before $RW
        fi
        refwatch_stop $SIG
        echo "$SIG $SENT $EXITED $ENDED" > $D/signal.txt
        say "scenario $S: SIG$SIG sent at $SENT s, end line seen at $ENDED s, refwatch gone at $EXITED s"
        if [ $SIG = KILL ]; then
            n=0
            while :; do
                bpf_objects $D/bpf-after
                left=""
                while read k id; do
                    grep -q "^$id: " $D/bpf-after/$k.txt && left="$left $k $id"
                done < $D/bpf-before/ids.txt
                [ -z "$left" ] && break
                n=$((n + 1))
                [ $n -gt @RELEASE_TICKS@ ] && break
                usleep 100000
            done
            echo "$(up)${left:+ left:$left}" > $D/bpf-after/when.txt
            # Under --watch: the debug registers are free again for a
            # second refwatch.
            case "$3" in *--watch*) refwatch probes > $D/probes-after.txt 2>&1 ;; esac
            say "scenario $S: $(wc -l < $D/bpf-before/ids.txt) BPF objects of refwatch's before the kill, left after: ${left:-none} (uptime $(up) s)"
        fi
    fi
    wait $WL
    wrc=$?
    echo $wrc > $D/workload.rc
    say "scenario $S end: workload rc $wrc, refwatch rc $(head -n 1 $D/refwatch.rc) (uptime $(up) s)"
}

refwatch probes > /out/probes.txt 2>&1
echo $? > /out/probes.rc
# The kprobe fallback, which fentry-capable kernels never use otherwise.
refwatch probes --mode kprobe > /out/probes-kprobe.txt 2>&1
echo $? > /out/probes-kprobe.rc
say "probes done (uptime $(up) s)"
@RUN@
