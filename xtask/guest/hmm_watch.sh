# The HMM +watch scenarios' share of the lab guest's /init
# (xtask/guest/hmm_watch.sh): cargo xtask lab puts it into init.sh
# (its HMM_WATCH placeholder) for a run with such a scenario.

# hmm_watch_pfns N: sets HMM_WATCH_PFNS to the N device-private PFNs the
# HMM test driver (lib/test_hmm.c) hands out first, comma-separated, for an
# HMM +watch scenario's refwatch to watch before its workload takes them
# (watching pages as refwatch learns of them arms them mid-migration, after
# the inline get of remove_migration_pte). Why these: at load, each dmirror
# device registers a region named hmm_dmirror (request_free_mem_region,
# which takes the highest free range, so /dev/hmm_dmirror0, registered
# first, has the highest one) and pushes its PFNs, lowest first, on a free
# list it pops from the head: the first pages it hands out are its region's
# highest, and a freed page goes back on the head, so each scenario of the
# boot that works on N pages gets the same N. A wrong guess fails the
# scenario's check (too few refcount changes on the watched pages).
hmm_watch_pfns() {
    top=""
    for r in $(awk '$NF == "hmm_dmirror" { print $1 }' /proc/iomem); do
        e=$(( 0x${r#*-} ))
        if [ -z "$top" ] || [ $(( e > top )) = 1 ]; then top=$e; region=$r; fi
    done
    [ -n "$top" ] || fail "no hmm_dmirror region in /proc/iomem: is test_hmm loaded?"
    last=$(( (top + 1) >> 12 ))
    HMM_WATCH_PFNS=""
    i=1
    while [ $i -le $1 ]; do
        HMM_WATCH_PFNS="${HMM_WATCH_PFNS:+$HMM_WATCH_PFNS,}$(printf '0x%x' $(( last - i )))"
        i=$((i + 1))
    done
    say "HMM watch: the test driver's first $1 pages are $HMM_WATCH_PFNS (its highest region: $region)"
}
