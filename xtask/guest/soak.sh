# cargo xtask bench soak (run by the lab's /init after the fs-dax mount):
# `refwatch record` with its defaults while `workload @WORKLOAD@` runs in a
# loop for @SECS@ s of guest time; refwatch's resident set (VmRSS of
# /proc/PID/status) is sampled every @SAMPLE_SECS@ s into $B/rss.txt as
# "<uptime s> <VmRSS kB> <workload runs so far>". Runs inside the lab's
# /init (xtask/guest/init.sh), whose say, up, fail and refwatch_stop it uses.
B=/out/soak
mkdir -p $B
rm -f /tmp/soak.rec
refwatch record -o /tmp/soak.rec --ready-file $B/ready --log-file $B/refwatch.log --summary-secs 0 > $B/refwatch.out 2>&1 &
RW=$!
n=0
while [ ! -e $B/ready ]; do
    if ! kill -0 $RW 2>/dev/null; then
        wait $RW
        fail "soak: refwatch exited before ready (exit $?): $(tail -n 1 $B/refwatch.out)"
    fi
    n=$((n + 1))
    [ $n -gt @READY_TICKS@ ] && fail "soak: refwatch not ready after @READY_SECS@ s"
    usleep 100000
done
echo 0 > /tmp/soak-runs
say "soak: refwatch ready (uptime $(up) s); workload @WORKLOAD@ in a loop for @SECS@ s"
(
    while kill -0 $RW 2>/dev/null; do
        rss=$(awk '$1 == "VmRSS:" { print $2 }' /proc/$RW/status 2>/dev/null)
        [ -n "$rss" ] && echo "$(up) $rss $(cat /tmp/soak-runs)" >> $B/rss.txt
        sleep @SAMPLE_SECS@
    done
) &
SAMPLER=$!
start=$(cut -d. -f1 /proc/uptime)
end=$((start + @SECS@))
runs=0
failed=0
while [ "$(cut -d. -f1 /proc/uptime)" -lt $end ]; do
    if ! workload @WORKLOAD@ --dir /mnt/dax --pages @PAGES@ --out /tmp/soak-workload.json > /tmp/soak-workload.out 2>&1; then
        failed=$((failed + 1))
        cp /tmp/soak-workload.out $B/workload-failed.out
    fi
    runs=$((runs + 1))
    echo $runs > /tmp/soak-runs
    if [ $((runs % 200)) = 0 ]; then
        say "soak: $runs workload runs, refwatch VmRSS $(tail -n 1 $B/rss.txt | cut -d' ' -f2) kB (uptime $(up) s)"
    fi
done
echo "$runs $failed" > $B/workload-runs.txt
awk '$1 == "VmHWM:" { print $2 }' /proc/$RW/status > $B/hwm.txt 2>/dev/null
# The series ends with the load: no sample of refwatch's shutdown.
kill $SAMPLER 2>/dev/null
wait $SAMPLER
D=$B
note=""
refwatch_stop
tail -n 1 /tmp/soak.rec > $B/recording.end 2>/dev/null
wc -c < /tmp/soak.rec > $B/recording.size 2>/dev/null
rm -f /tmp/soak.rec
say "soak: done, $runs workload runs ($failed failed), refwatch rc $(head -n 1 $B/refwatch.rc)${note:+ ($note)} (uptime $(up) s)"
