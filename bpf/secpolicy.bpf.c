/* secpolicy.bpf.c: every probe of the live monitor, compiled once by bcc. Which probes exist
 * is chosen with -DSP_WANT_<TYPE> from the loaded rules; kernel struct offsets come from the
 * running kernel's BTF as -DSP_OFF_* (never from the build headers); filters live in maps. */
#include <uapi/linux/ptrace.h>
#include <linux/capability.h>
#include "secpolicy.h"

#ifndef SP_SELF_TGID
#define SP_SELF_TGID 0
#endif
#ifndef SP_RINGBUF_PAGES
#define SP_RINGBUF_PAGES 4096
#endif
#ifndef SP_PENDING_MAX
#define SP_PENDING_MAX 2048
#endif
/* Linux-PAM's struct pam_handle: service_name, user, rhost, ruser, tty (stable since 2006). */
#ifndef SP_PAM_OFF_SERVICE
#define SP_PAM_OFF_SERVICE 40
#endif
#ifndef SP_PAM_OFF_USER
#define SP_PAM_OFF_USER 48
#endif
#ifndef SP_PAM_OFF_RHOST
#define SP_PAM_OFF_RHOST 56
#endif
#ifndef SP_PAM_OFF_RUSER
#define SP_PAM_OFF_RUSER 64
#endif
#ifndef SP_PAM_OFF_TTY
#define SP_PAM_OFF_TTY 72
#endif

#define SP_AT_FDCWD -100
/* Keeps clang from dropping a bounds mask it can prove redundant, which the verifier needs. */
#define sp_barrier_var(v) asm volatile("" : "+r"(v))

BPF_RINGBUF_OUTPUT(events, SP_RINGBUF_PAGES);
/* Records that could not be delivered (ring buffer full, pending table full), per type. */
BPF_PERCPU_ARRAY(lost, u64, SP_EV_MAX);
/* Records handed to the ring buffer, per type: sent == delivered + lost in user space. */
BPF_PERCPU_ARRAY(sent, u64, SP_EV_MAX);
/* Total lost so far, stamped on every record: user space sees exactly between which two
 * records events were lost. */
BPF_ARRAY(lost_total, u64, 1);
BPF_PERCPU_ARRAY(scratch, struct sp_event, 1);
/* A syscall's record between sys_enter and sys_exit (or sched_process_exec), by thread id. */
BPF_HASH(pending, u32, struct sp_event, SP_PENDING_MAX);
/* A path syscall that only a failure can make interesting (e.g. "open refused with EACCES"),
 * by thread id: its arguments wait for sys_exit, and the record is built there only if the
 * call failed. Copying a whole record into `pending` for each of the storm of successful
 * opens is what the monitor's openat cost was mostly made of. */
struct sp_lite {
    u64 path;
    u64 a[4];
    u32 type;
    u32 probe;
    u32 mask;
    u32 pad;
};
#ifdef SP_TASK_STORAGE
BPF_TASK_STORAGE(lite_store, struct sp_lite);
static __always_inline struct sp_lite *sp_lite_get(int create)
{
    struct sp_lite *l = lite_store.task_storage_get(bpf_get_current_task_btf(), 0,
                                                    create ? BPF_LOCAL_STORAGE_GET_F_CREATE : 0);
    if (l && !create && !l->type)
        return 0;
    return l;
}
static __always_inline void sp_lite_done(struct sp_lite *l, u32 tid) { l->type = 0; }
#else
BPF_HASH(pending_lite, u32, struct sp_lite, SP_PENDING_MAX);
static __always_inline void sp_lite_done(struct sp_lite *l, u32 tid) { pending_lite.delete(&tid); }
#endif
BPF_ARRAY(type_cfg, struct sp_type_cfg, SP_EV_MAX);
BPF_HASH(uid_filter, struct sp_uid_key, u8, 4096);
BPF_HASH(comm_filter, struct sp_comm_key, u8, 4096);
BPF_ARRAY(prefixes, struct sp_prefix, SP_MAX_PREFIXES);
BPF_HASH(pam_calls, u32, u64, 1024);
/* bcc attaches the probes as it loads them, before user space has filled the filter maps:
 * nothing is recorded until user space sets armed[0] = 1. */
BPF_ARRAY(armed, u32, 1);

static __always_inline void sp_count_lost(u32 type)
{
    u64 *c = lost.lookup(&type);
    if (c)
        *c += 1;
    u32 zero = 0;
    u64 *t = lost_total.lookup(&zero);
    if (t)
        __sync_fetch_and_add(t, 1);
}

static __always_inline void sp_count_sent(u32 type)
{
    u64 *c = sent.lookup(&type);
    if (c)
        *c += 1;
}

static __always_inline void sp_emit(struct sp_event *e)
{
    u32 zero = 0;
    u64 *t = lost_total.lookup(&zero);
    e->lost_seq = t ? (u32)*t : 0;
    u32 len = e->str_len;
    sp_barrier_var(len);
    u32 size = SP_HDR_SIZE + (len & (SP_STR_BUF - 1));
    /* No wakeup: user space drains on a short timer, which keeps the cost per event tiny. */
    if (events.ringbuf_output(e, size, BPF_RB_NO_WAKEUP) < 0)
        sp_count_lost(e->type);
    else
        sp_count_sent(e->type);
}

static __always_inline void *sp_task(void)
{
    return (void *)bpf_get_current_task();
}

static __always_inline void sp_fill_creds(struct sp_event *e)
{
    u64 ug = bpf_get_current_uid_gid();
    e->uid = (u32)ug;
    e->gid = ug >> 32;
    e->euid = e->uid;
    e->egid = e->gid;
#if defined(SP_OFF_TASK_CRED) && defined(SP_OFF_CRED_EUID) && defined(SP_OFF_CRED_EGID)
    void *task = sp_task();
    void *cred = 0;
    bpf_probe_read_kernel(&cred, sizeof(cred), (char *)task + SP_OFF_TASK_CRED);
    if (cred) {
        bpf_probe_read_kernel(&e->euid, 4, (char *)cred + SP_OFF_CRED_EUID);
        bpf_probe_read_kernel(&e->egid, 4, (char *)cred + SP_OFF_CRED_EGID);
        e->flags |= SP_F_CREDS;
    }
#endif
}

static __always_inline void sp_fill(struct sp_event *e, u32 type, u32 probe)
{
    u64 pt = bpf_get_current_pid_tgid();
    e->ts = bpf_ktime_get_boot_ns();
    e->type = type;
    e->pid = pt >> 32;
    e->tid = (u32)pt;
    e->flags = 0;
    e->ret = 0;
    e->str_len = 0;
    e->nstr = 0;
    e->ppid = 0;
    e->auid = 0xffffffff;
    e->session = 0xffffffff;
    e->a[0] = 0;
    e->a[1] = 0;
    e->a[2] = 0;
    e->a[3] = 0;
    e->a[4] = 0;
    e->a[5] = probe;
    e->cgroup_id = bpf_get_current_cgroup_id();
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    sp_fill_creds(e);
    void *task = sp_task();
#if defined(SP_OFF_TASK_REAL_PARENT) && defined(SP_OFF_TASK_TGID)
    void *parent = 0;
    bpf_probe_read_kernel(&parent, sizeof(parent), (char *)task + SP_OFF_TASK_REAL_PARENT);
    if (parent) {
        bpf_probe_read_kernel(&e->ppid, 4, (char *)parent + SP_OFF_TASK_TGID);
        e->flags |= SP_F_PPID;
    }
#endif
#if defined(SP_OFF_TASK_LOGINUID) && defined(SP_OFF_TASK_SESSIONID)
    bpf_probe_read_kernel(&e->auid, 4, (char *)task + SP_OFF_TASK_LOGINUID);
    bpf_probe_read_kernel(&e->session, 4, (char *)task + SP_OFF_TASK_SESSIONID);
    e->flags |= SP_F_AUDIT;
#endif
}

static __always_inline struct sp_event *sp_scratch(void)
{
    u32 zero = 0;
    return scratch.lookup(&zero);
}

/* Append a NUL-terminated string read from user (or kernel) memory; 0 when a non-null
 * pointer could not be read (the page is not resident yet). */
static __always_inline int sp_put_str(struct sp_event *e, const void *p, int user)
{
    u32 off = e->str_len;
    if (off >= SP_STR_MAX) {
        e->flags |= SP_F_TRUNCATED;
        return 1;
    }
    sp_barrier_var(off);
    off &= SP_STR_MAX - 1;
    int n = 0;
    if (p) {
        if (user)
            n = bpf_probe_read_user_str(&e->str[off], SP_PIECE_MAX, p);
        else
            n = bpf_probe_read_kernel_str(&e->str[off], SP_PIECE_MAX, p);
    }
    int ok = 1;
    if (n <= 0) {
        e->str[off] = 0;
        ok = !p;
        n = 1;
    }
    if (n >= SP_PIECE_MAX)
        e->flags |= SP_F_TRUNCATED;
    e->str_len = off + n;
    e->nstr += 1;
    return ok;
}

/* ---- cheap filters compiled from the rules ---- */

/* 1 when the current task must not be recorded: the monitor itself, or not armed yet. */
static __always_inline int sp_self(void)
{
    u32 zero = 0;
    u32 *on = armed.lookup(&zero);
    if (!on || !*on)
        return 1;
    return (bpf_get_current_pid_tgid() >> 32) == SP_SELF_TGID;
}

/* 1 when the record may interest a rule (uid and comm checks; path checks come later). */
static __always_inline int sp_pre_filter(struct sp_event *e, struct sp_type_cfg *cfg)
{
    if (!cfg)
        return 1;
    if (cfg->flags & SP_FILTER_DROP)
        return 0;
    if (cfg->flags & SP_FILTER_UID) {
        struct sp_uid_key k = {.type = e->type, .uid = e->uid};
        if (!uid_filter.lookup(&k)) {
            k.uid = e->euid;
            if (!uid_filter.lookup(&k))
                return 0;
        }
    }
    if (cfg->flags & SP_FILTER_COMM) {
        struct sp_comm_key k = {.type = e->type};
        __builtin_memcpy(k.comm, e->comm, sizeof(k.comm));
        if (!comm_filter.lookup(&k))
            return 0;
    }
    return 1;
}

/* 1 when the string at `off` cannot be judged in the kernel: relative, longer than we scan,
 * or with // or /. in it (it may resolve to somewhere a prefix test cannot see). */
#define SP_SCAN_MAX 256
#define SP_ONES 0x0101010101010101ULL
#define SP_LOW7 0x7f7f7f7f7f7f7f7fULL
/* 0x80 in each byte of x that is zero, exactly (no borrow between bytes). */
static __always_inline u64 sp_zero_bytes(u64 x)
{
    return ~(((x & SP_LOW7) + SP_LOW7) | x | SP_LOW7);
}

static __always_inline int sp_path_unclear(struct sp_event *e, u32 off, u32 len)
{
    sp_barrier_var(off);
    off &= SP_STR_MAX - 1;
    if (e->str[off] != '/' || len > SP_SCAN_MAX)
        return 1;
    /* Eight bytes at a time: a '/' at byte j (j < len - 1) followed by '/' or '.'. */
    for (u32 k = 0; k < SP_SCAN_MAX / 8; k++) {
        u32 at = k * 8;
        if (at + 1 >= len)
            break;
        u64 w = *(u64 *)&e->str[(off + at) & (SP_STR_MAX - 1)];
        u64 nx = *(u64 *)&e->str[(off + at + 1) & (SP_STR_MAX - 1)];
        u64 bad = sp_zero_bytes(w ^ ('/' * SP_ONES)) &
                  (sp_zero_bytes(nx ^ ('/' * SP_ONES)) | sp_zero_bytes(nx ^ ('.' * SP_ONES)));
        u32 left = len - 1 - at;
        if (left < 8)
            bad &= (1ULL << (left * 8)) - 1;
        if (bad)
            return 1;
    }
    return 0;
}

/* Bit p set when the string at `off` starts with prefix slot p (the type's prefixes). */
static __always_inline u32 sp_prefix_bits(struct sp_event *e, u32 off, struct sp_type_cfg *cfg)
{
    sp_barrier_var(off);
    off &= SP_STR_MAX - 1;
    /* A plain load from the map value (x86 and arm64 allow unaligned ones here). */
    u64 w0 = *(u64 *)&e->str[off];
    u32 bits = 0;
    for (u32 i = 0; i < SP_MAX_PREFIXES; i++) {
        if (i >= cfg->nprefixes)
            break;
        if ((w0 ^ cfg->head[i]) & cfg->head_mask[i])
            continue;
        u32 p = cfg->slot[i] & (SP_MAX_PREFIXES - 1);
        struct sp_prefix *pre = prefixes.lookup(&p);
        if (!pre)
            continue;
        int ok = 1;
        for (u32 k = 1; k < SP_PREFIX_WORDS; k++) {
            u32 done = k * 8;
            if (done >= pre->len)
                break;
            u64 w = *(u64 *)&e->str[(off + done) & (SP_STR_MAX - 1)];
            u32 rest = pre->len - done;
            u64 m = rest >= 8 ? ~0ULL : ((1ULL << (rest * 8)) - 1);
            if ((w ^ pre->w[k]) & m) {
                ok = 0;
                break;
            }
        }
        if (ok)
            bits |= 1u << p;
    }
    return bits;
}

/* The clauses of the record's type (one per rule) that can still hold given its path(s), as a
 * bit mask kept in a[5] >> 32 until sys_exit; 0 = no rule can match. npaths strings start at
 * offsets 0 and off2. */
static __always_inline u32 sp_clauses(struct sp_event *e, struct sp_type_cfg *cfg, int npaths,
                                      u32 len1, u32 off2, u32 len2)
{
    if (!cfg || !(cfg->flags & SP_FILTER_CLAUSES))
        return 0xff;
    int unclear = npaths == 0;
    u32 matched = 0;
    if (!unclear && cfg->prefix_mask) {
        if (sp_path_unclear(e, 0, len1))
            unclear = 1;
        else
            matched = sp_prefix_bits(e, 0, cfg);
        if (npaths == 2 && !unclear) {
            if (sp_path_unclear(e, off2, len2))
                unclear = 1;
            else
                matched |= sp_prefix_bits(e, off2, cfg);
        }
    }
    u32 mask = 0;
    for (u32 i = 0; i < SP_MAX_CLAUSES; i++) {
        if (i >= cfg->nclauses)
            break;
        if ((cfg->c[i].flags & SP_C_PREFIX) && !unclear && !(matched & cfg->c[i].prefix_mask))
            continue;
        mask |= 1u << i;
    }
    return mask;
}

/* At sys_exit: does one of the clauses left at sys_enter (mask) accept this result? */
static __always_inline int sp_outcome_mask_ok(u32 type, u32 mask, long ret)
{
    struct sp_type_cfg *cfg = type_cfg.lookup(&type);
    if (!cfg || !(cfg->flags & SP_FILTER_CLAUSES))
        return 1;
    /* connect(2) in progress on a non-blocking socket is a success */
    int failed = ret < 0 && !(type == SP_EV_CONNECT && ret == -115);
    for (u32 i = 0; i < SP_MAX_CLAUSES; i++) {
        if (i >= cfg->nclauses)
            break;
        if (!(mask & (1u << i)))
            continue;
        u32 f = cfg->c[i].flags;
        if ((f & SP_C_SUCCESS) && failed)
            continue;
        if ((f & SP_C_FAILURE) && !failed)
            continue;
        if (f & SP_C_ERRNO) {
            long err = -ret;
            if (err <= 0 || err >= 64 || !(cfg->c[i].errno_mask & (1ULL << err)))
                continue;
        }
        return 1;
    }
    return 0;
}

static __always_inline int sp_outcome_ok(struct sp_event *e, long ret)
{
    return sp_outcome_mask_ok(e->type, e->a[5] >> 32, ret);
}

/* 1 when every clause in mask needs the call to fail: the record can wait for sys_exit as a
 * few words (struct sp_lite) instead of a whole record, since most such calls succeed. */
static __always_inline int sp_needs_failure(struct sp_type_cfg *cfg, u32 mask)
{
    if (!cfg || !(cfg->flags & SP_FILTER_CLAUSES))
        return 0;
    for (u32 i = 0; i < SP_MAX_CLAUSES; i++) {
        if (i >= cfg->nclauses)
            break;
        if ((mask & (1u << i)) && !(cfg->c[i].flags & (SP_C_FAILURE | SP_C_ERRNO)))
            return 0;
    }
    return 1;
}

static __always_inline struct sp_type_cfg *sp_cfg(u32 type)
{
    return type_cfg.lookup(&type);
}

static __always_inline void sp_stash_raw(struct sp_event *e)
{
    u32 tid = e->tid;
    if (pending.update(&tid, e) != 0)
        sp_count_lost(e->type);
}

/* Stash a record whose clause mask is known (0: no rule can match it, drop). */
static __always_inline void sp_stash_mask(struct sp_event *e, u32 mask)
{
    if (!mask)
        return;
    e->a[5] = (e->a[5] & 0xffffffffULL) | ((u64)mask << 32);
    sp_stash_raw(e);
}

/* Stash a record without paths. */
static __always_inline void sp_stash(struct sp_event *e)
{
    sp_stash_mask(e, sp_clauses(e, sp_cfg(e->type), 0, 0, 0, 0));
}

/* Start a syscall record: fill the header and run the uid/comm filters. */
static __always_inline struct sp_event *sp_begin(u32 type, u32 probe)
{
    if (sp_self())
        return 0;
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    sp_fill(e, type, probe);
    if (!sp_pre_filter(e, sp_cfg(type)))
        return 0;
    return e;
}

/* Paths that could not be read at sys_enter are read now that the kernel has faulted them
 * in (a[4] = first pointer, a[3] = second for rename). They are rare, so they go up without
 * a path test (user space applies it after resolving): that keeps the exit programs small. */
static __always_inline int sp_reread(struct sp_event *e)
{
    e->str_len = 0;
    e->nstr = 0;
    sp_put_str(e, (const char *)e->a[4], 1);
    if (e->type == SP_EV_RENAME)
        sp_put_str(e, (const char *)e->a[3], 1);
    return 1;
}

/* Finish at sys_exit: attach the result, send, forget. */
static __always_inline int sp_finish(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sp_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    if (!sp_outcome_ok(e, ret)) {
        pending.delete(&tid);
        return 0;
    }
    e->ret = ret;
    e->flags |= SP_F_RET;
    e->ts = bpf_ktime_get_boot_ns();  /* when the result is known: records stay in time order */
    sp_emit(e);
    pending.delete(&tid);
    return 0;
}

/* A failed call kept as struct sp_lite: the record is built now, its header and path as they
 * are at sys_exit (the same task; the path is the buffer the kernel has just read). */
static __always_inline int sp_finish_lite(struct sp_lite *l, u32 tid, long ret)
{
    u32 type = l->type;
    u32 mask = l->mask;
    if (!sp_outcome_mask_ok(type, mask, ret)) {
        sp_lite_done(l, tid);
        return 0;
    }
    struct sp_event *e = sp_scratch();
    if (!e) {
        sp_lite_done(l, tid);
        return 0;
    }
    sp_fill(e, type, l->probe);
    if (!sp_pre_filter(e, sp_cfg(type))) {
        sp_lite_done(l, tid);
        return 0;
    }
    e->a[0] = l->a[0];
    e->a[1] = l->a[1];
    e->a[2] = l->a[2];
    e->a[3] = l->a[3];
    e->a[4] = l->path;
    e->a[5] = l->probe | ((u64)mask << 32);
    sp_put_str(e, (const char *)l->path, 1);
    sp_lite_done(l, tid);
    e->ret = ret;
    e->flags |= SP_F_RET;
    sp_emit(e);
    return 0;
}

/* The same for records with paths, which may have to be read again first. */
static __always_inline int sp_finish_path(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
#ifdef SP_TASK_STORAGE
    struct sp_lite *l = sp_lite_get(0);
#else
    struct sp_lite *l = pending_lite.lookup(&tid);
#endif
    if (l)
        return sp_finish_lite(l, tid, ret);
    struct sp_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    if ((e->flags & SP_F_DEFER) && !sp_reread(e)) {
        pending.delete(&tid);
        return 0;
    }
    if (!sp_outcome_ok(e, ret)) {
        pending.delete(&tid);
        return 0;
    }
    e->ret = ret;
    e->flags |= SP_F_RET;
    e->ts = bpf_ktime_get_boot_ns();  /* when the result is known: records stay in time order */
    sp_emit(e);
    pending.delete(&tid);
    return 0;
}

/* A record with one path (at str offset 0). The path test runs first, on a bare record: most
 * opens are dropped before any of the header's helper calls and kernel reads. */
static __always_inline int sp_path_event(u32 type, u32 probe, long dfd, const char *path,
                                         u64 a1, u64 a2, u64 a3)
{
    if (sp_self())
        return 0;
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    struct sp_type_cfg *cfg = sp_cfg(type);
    e->str_len = 0;
    e->nstr = 0;
    e->flags = 0;
    u32 mask = 0xff; /* unreadable now: every clause stays open, user space judges the path */
    u8 defer = 0;
    if (!sp_put_str(e, path, 1))
        defer = SP_F_DEFER;
    else if (!(mask = sp_clauses(e, cfg, 1, e->str_len, 0, 0)))
        return 0;
    if (sp_needs_failure(cfg, mask)) {
#ifdef SP_TASK_STORAGE
        struct sp_lite *l = sp_lite_get(1);
        if (!l) {
            sp_count_lost(type);
            return 0;
        }
        l->path = (u64)path;
        l->type = type;
        l->probe = probe;
        l->mask = mask;
        l->a[0] = dfd;
        l->a[1] = a1;
        l->a[2] = a2;
        l->a[3] = a3;
#else
        struct sp_lite l = {.path = (u64)path, .type = type, .probe = probe, .mask = mask};
        l.a[0] = dfd;
        l.a[1] = a1;
        l.a[2] = a2;
        l.a[3] = a3;
        u32 tid = (u32)bpf_get_current_pid_tgid();
        if (pending_lite.update(&tid, &l) != 0)
            sp_count_lost(type);
#endif
        return 0;
    }
    u16 len = e->str_len;
    u8 n = e->nstr;
    u8 fl = e->flags | defer;
    sp_fill(e, type, probe);
    e->str_len = len;
    e->nstr = n;
    e->flags |= fl;
    if (!sp_pre_filter(e, cfg))
        return 0;
    e->a[0] = dfd;
    e->a[1] = a1;
    e->a[2] = a2;
    e->a[3] = a3;
    e->a[4] = (u64)path;
    sp_stash_mask(e, mask);
    return 0;
}

#define SP_EXIT(name) \
    TRACEPOINT_PROBE(syscalls, sys_exit_##name) { return sp_finish(args->ret); }
#define SP_EXIT_PATH(name) \
    TRACEPOINT_PROBE(syscalls, sys_exit_##name) { return sp_finish_path(args->ret); }

/* ---- process lifecycle (always on: they keep the process context current) ---- */

static __always_inline int sp_exec_enter(u32 probe, long dfd, const char *filename,
                                         const char *const *argv, u64 flags)
{
    if (sp_self())
        return 0;
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    sp_fill(e, SP_EV_EXEC, probe);
    e->a[0] = dfd;
    e->a[1] = flags;
    sp_put_str(e, filename, 1);
    e->a[3] = e->str_len; /* where argv starts: the kernel's copy of the path replaces ours */
    u32 argc = 0;
#pragma unroll
    for (int i = 0; i < SP_MAX_ARGS; i++) {
        const char *arg = 0;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) != 0 || !arg)
            break;
        if (e->str_len >= SP_STR_MAX) {
            e->flags |= SP_F_TRUNCATED;
            break;
        }
        sp_put_str(e, arg, 1);
        argc++;
    }
    e->a[2] = argc;
    sp_stash(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_execve)
{
    return sp_exec_enter(SP_P_EXECVE, SP_AT_FDCWD, args->filename, args->argv, 0);
}

TRACEPOINT_PROBE(syscalls, sys_enter_execveat)
{
    return sp_exec_enter(SP_P_EXECVEAT, args->fd, args->filename, args->argv, args->flags);
}

/* A failed exec is reported from sys_exit; a successful one from sched_process_exec. */
static __always_inline int sp_exec_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    if (ret >= 0) {
        pending.delete(&tid);
        return 0;
    }
    return sp_finish(ret);
}

TRACEPOINT_PROBE(syscalls, sys_exit_execve) { return sp_exec_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_exit_execveat) { return sp_exec_exit(args->ret); }

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    u32 old = args->old_pid;
    struct sp_event *e = pending.lookup(&old);
    if (!e) {
        if (sp_self())
            return 0;
        /* exec started before we attached: report what the tracepoint knows. */
        e = sp_scratch();
        if (!e)
            return 0;
        sp_fill(e, SP_EV_EXEC, SP_P_SCHED_EXEC);
        e->a[0] = SP_AT_FDCWD;
        sp_put_str(e, (char *)args + (args->data_loc_filename & 0xFFFF), 0);
        e->flags |= SP_F_RET;
        sp_emit(e);
        return 0;
    }
    /* The record: the header with credentials, comm and pid after the exec (a setuid binary
     * has its new euid here), the path as the kernel copied it, then argv from sys_enter. */
    struct sp_event *out = sp_scratch();
    if (!out) {
        pending.delete(&old);
        return 0;
    }
    bpf_probe_read_kernel(out, SP_HDR_SIZE, e);
    u64 pt = bpf_get_current_pid_tgid();
    out->pid = pt >> 32;
    out->tid = (u32)pt;
    out->ts = bpf_ktime_get_boot_ns();
    bpf_get_current_comm(&out->comm, sizeof(out->comm));
    sp_fill_creds(out);
    out->str_len = 0;
    out->nstr = 0;
    sp_put_str(out, (char *)args + (args->data_loc_filename & 0xFFFF), 0);
    u32 start = e->a[3];
    u32 end = e->str_len;
    u32 off = out->str_len;
    if (end > start && off < SP_PIECE_MAX && start < SP_STR_BUF) {
        u32 len = end - start;
        sp_barrier_var(len);
        len &= SP_STR_MAX - 1;
        sp_barrier_var(off);
        off &= SP_PIECE_MAX - 1;
        sp_barrier_var(start);
        start &= SP_STR_MAX - 1;
        if (len && bpf_probe_read_kernel(&out->str[off], len, &e->str[start]) == 0) {
            out->str_len = off + len;
            out->nstr = e->nstr;
        }
    }
    out->ret = 0;
    out->flags |= SP_F_RET;
    sp_emit(out);
    pending.delete(&old);
    return 0;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u64 pt = bpf_get_current_pid_tgid();
    u32 tid = (u32)pt;
    pending.delete(&tid);
#ifndef SP_TASK_STORAGE
    pending_lite.delete(&tid);
#endif
    pam_calls.delete(&tid);
    if ((pt >> 32) != tid || sp_self())
        return 0;
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    sp_fill(e, SP_EV_EXIT, SP_P_SCHED_EXIT);
    sp_emit(e);
    return 0;
}

#ifdef SP_WANT_CHDIR
TRACEPOINT_PROBE(syscalls, sys_enter_chdir)
{
    struct sp_event *e = sp_begin(SP_EV_CHDIR, SP_P_CHDIR);
    if (!e)
        return 0;
    e->a[0] = SP_AT_FDCWD;
    sp_put_str(e, args->filename, 1);
    sp_stash(e);
    return 0;
}
SP_EXIT(chdir)

TRACEPOINT_PROBE(syscalls, sys_enter_fchdir)
{
    struct sp_event *e = sp_begin(SP_EV_CHDIR, SP_P_FCHDIR);
    if (!e)
        return 0;
    e->a[0] = args->fd;
    e->flags |= SP_F_FD_PATH;
    sp_stash(e);
    return 0;
}
SP_EXIT(fchdir)
#endif

/* ---- opens: "write" when the flags ask for writing or creating, else "open" ---- */

/* O_WRONLY O_RDWR O_CREAT O_TRUNC O_APPEND __O_TMPFILE, as the auditd source decides */
#define SP_O_WRITE_MASK (01 | 02 | 0100 | 01000 | 02000 | 020000000)

static __always_inline int sp_open(u32 probe, long dfd, const char *path, u64 flags, u64 mode)
{
    u32 type = (flags & SP_O_WRITE_MASK) ? SP_EV_WRITE : SP_EV_OPEN;
#ifndef SP_WANT_OPEN
    if (type == SP_EV_OPEN)
        return 0;
#endif
#ifndef SP_WANT_WRITE
    if (type == SP_EV_WRITE)
        return 0;
#endif
    return sp_path_event(type, probe, dfd, path, flags, mode, 0);
}

#if defined(SP_WANT_OPEN) || defined(SP_WANT_WRITE)
TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    return sp_open(SP_P_OPENAT, args->dfd, args->filename, args->flags, args->mode);
}
SP_EXIT_PATH(openat)

TRACEPOINT_PROBE(syscalls, sys_enter_openat2)
{
    u64 how[2] = {};
    bpf_probe_read_user(&how, sizeof(how), args->how);
    return sp_open(SP_P_OPENAT2, args->dfd, args->filename, how[0], how[1]);
}
SP_EXIT_PATH(openat2)

#ifdef SP_HAVE_OPEN
TRACEPOINT_PROBE(syscalls, sys_enter_open)
{
    return sp_open(SP_P_OPEN, SP_AT_FDCWD, args->filename, args->flags, args->mode);
}
SP_EXIT_PATH(open)
#endif

#ifdef SP_HAVE_CREAT
TRACEPOINT_PROBE(syscalls, sys_enter_creat)
{
    return sp_open(SP_P_CREAT, SP_AT_FDCWD, args->pathname, 01 | 0100 | 01000, args->mode);
}
SP_EXIT_PATH(creat)
#endif
#endif

#ifdef SP_WANT_UNLINK
TRACEPOINT_PROBE(syscalls, sys_enter_unlinkat)
{
    return sp_path_event(SP_EV_UNLINK, SP_P_UNLINKAT, args->dfd, args->pathname, args->flag, 0, 0);
}
SP_EXIT_PATH(unlinkat)

#ifdef SP_HAVE_UNLINK
TRACEPOINT_PROBE(syscalls, sys_enter_unlink)
{
    return sp_path_event(SP_EV_UNLINK, SP_P_UNLINK, SP_AT_FDCWD, args->pathname, 0, 0, 0);
}
SP_EXIT_PATH(unlink)
#endif

#ifdef SP_HAVE_RMDIR
TRACEPOINT_PROBE(syscalls, sys_enter_rmdir)
{
    return sp_path_event(SP_EV_UNLINK, SP_P_RMDIR, SP_AT_FDCWD, args->pathname, 0x200, 0, 0);
}
SP_EXIT_PATH(rmdir)
#endif
#endif

#ifdef SP_WANT_RENAME
static __always_inline int sp_rename(u32 probe, long olddfd, const char *oldp, long newdfd,
                                     const char *newp, u64 flags)
{
    struct sp_event *e = sp_begin(SP_EV_RENAME, probe);
    if (!e)
        return 0;
    e->a[0] = olddfd;
    e->a[1] = newdfd;
    e->a[2] = flags;
    e->a[3] = (u64)newp;
    e->a[4] = (u64)oldp;
    int ok = sp_put_str(e, oldp, 1);
    u32 first = e->str_len;
    ok &= sp_put_str(e, newp, 1);
    /* Either end of the rename may be the watched one. */
    if (!ok) {
        e->flags |= SP_F_DEFER;
        sp_stash(e);
        return 0;
    }
    sp_stash_mask(e, sp_clauses(e, sp_cfg(SP_EV_RENAME), 2, first, first, e->str_len - first));
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_renameat2)
{
    return sp_rename(SP_P_RENAMEAT2, args->olddfd, args->oldname, args->newdfd, args->newname,
                     args->flags);
}
SP_EXIT_PATH(renameat2)

#ifdef SP_HAVE_RENAMEAT
TRACEPOINT_PROBE(syscalls, sys_enter_renameat)
{
    return sp_rename(SP_P_RENAMEAT, args->olddfd, args->oldname, args->newdfd, args->newname, 0);
}
SP_EXIT_PATH(renameat)
#endif

#ifdef SP_HAVE_RENAME
TRACEPOINT_PROBE(syscalls, sys_enter_rename)
{
    return sp_rename(SP_P_RENAME, SP_AT_FDCWD, args->oldname, SP_AT_FDCWD, args->newname, 0);
}
SP_EXIT_PATH(rename)
#endif
#endif

#ifdef SP_WANT_CHMOD
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat)
{
    return sp_path_event(SP_EV_CHMOD, SP_P_FCHMODAT, args->dfd, args->filename, args->mode, 0, 0);
}
SP_EXIT_PATH(fchmodat)

#ifdef SP_HAVE_FCHMODAT2
TRACEPOINT_PROBE(syscalls, sys_enter_fchmodat2)
{
    return sp_path_event(SP_EV_CHMOD, SP_P_FCHMODAT2, args->dfd, args->filename, args->mode,
                         args->flags, 0);
}
SP_EXIT_PATH(fchmodat2)
#endif

#ifdef SP_HAVE_CHMOD
TRACEPOINT_PROBE(syscalls, sys_enter_chmod)
{
    return sp_path_event(SP_EV_CHMOD, SP_P_CHMOD, SP_AT_FDCWD, args->filename, args->mode, 0, 0);
}
SP_EXIT_PATH(chmod)
#endif

/* By descriptor: the path is resolved in user space from /proc/PID/fd. */
TRACEPOINT_PROBE(syscalls, sys_enter_fchmod)
{
    struct sp_event *e = sp_begin(SP_EV_CHMOD, SP_P_FCHMOD);
    if (!e)
        return 0;
    e->a[0] = args->fd;
    e->a[1] = args->mode;
    e->flags |= SP_F_FD_PATH;
    sp_stash(e);
    return 0;
}
SP_EXIT(fchmod)
#endif

#ifdef SP_WANT_CHOWN
TRACEPOINT_PROBE(syscalls, sys_enter_fchownat)
{
    return sp_path_event(SP_EV_CHOWN, SP_P_FCHOWNAT, args->dfd, args->filename, args->user,
                         args->group, args->flag);
}
SP_EXIT_PATH(fchownat)

#ifdef SP_HAVE_CHOWN
TRACEPOINT_PROBE(syscalls, sys_enter_chown)
{
    return sp_path_event(SP_EV_CHOWN, SP_P_CHOWN, SP_AT_FDCWD, args->filename, args->user,
                         args->group, 0);
}
SP_EXIT_PATH(chown)
#endif

#ifdef SP_HAVE_LCHOWN
TRACEPOINT_PROBE(syscalls, sys_enter_lchown)
{
    return sp_path_event(SP_EV_CHOWN, SP_P_LCHOWN, SP_AT_FDCWD, args->filename, args->user,
                         args->group, 0x100);
}
SP_EXIT_PATH(lchown)
#endif

TRACEPOINT_PROBE(syscalls, sys_enter_fchown)
{
    struct sp_event *e = sp_begin(SP_EV_CHOWN, SP_P_FCHOWN);
    if (!e)
        return 0;
    e->a[0] = args->fd;
    e->a[1] = args->user;
    e->a[2] = args->group;
    e->flags |= SP_F_FD_PATH;
    sp_stash(e);
    return 0;
}
SP_EXIT(fchown)
#endif

/* ---- network ---- */

#if defined(SP_WANT_CONNECT) || defined(SP_WANT_ACCEPT)
/* struct socket * behind descriptor fd of the current task, or 0. */
static __always_inline void *sp_socket_of(long fd)
{
#if defined(SP_OFF_TASK_FILES) && defined(SP_OFF_FILES_FDT) && defined(SP_OFF_FDT_FD) && \
    defined(SP_OFF_FDT_MAX_FDS) && defined(SP_OFF_FILE_PRIVATE_DATA)
    void *files = 0, *fdt = 0, **fdarr = 0, *file = 0, *sock = 0;
    u32 max = 0;
    if (fd < 0)
        return 0;
    bpf_probe_read_kernel(&files, sizeof(files), (char *)sp_task() + SP_OFF_TASK_FILES);
    if (!files)
        return 0;
    bpf_probe_read_kernel(&fdt, sizeof(fdt), (char *)files + SP_OFF_FILES_FDT);
    if (!fdt)
        return 0;
    bpf_probe_read_kernel(&max, sizeof(max), (char *)fdt + SP_OFF_FDT_MAX_FDS);
    if (fd >= max)
        return 0;
    bpf_probe_read_kernel(&fdarr, sizeof(fdarr), (char *)fdt + SP_OFF_FDT_FD);
    if (!fdarr)
        return 0;
    bpf_probe_read_kernel(&file, sizeof(file), &fdarr[fd]);
    if (!file)
        return 0;
    bpf_probe_read_kernel(&sock, sizeof(sock), (char *)file + SP_OFF_FILE_PRIVATE_DATA);
    return sock;
#else
    return 0;
#endif
}

/* a[0] = family | socktype << 16 | local port << 32 | remote port << 48;
 * a[1..2] = remote address, a[3..4] = local address (network byte order, v4 in a[1]/a[3]). */
static __always_inline void sp_sock_details(struct sp_event *e, long fd, int remote_from_sk)
{
#if defined(SP_OFF_SOCKET_TYPE) && defined(SP_OFF_SOCKET_SK) && defined(SP_OFF_SK_NUM)
    void *sock = sp_socket_of(fd);
    if (!sock)
        return;
    u16 stype = 0, family = 0, lport = 0, rport = 0;
    void *sk = 0;
    bpf_probe_read_kernel(&stype, 2, (char *)sock + SP_OFF_SOCKET_TYPE);
    bpf_probe_read_kernel(&sk, sizeof(sk), (char *)sock + SP_OFF_SOCKET_SK);
    if (!sk)
        return;
    bpf_probe_read_kernel(&family, 2, (char *)sk + SP_OFF_SK_FAMILY);
    bpf_probe_read_kernel(&lport, 2, (char *)sk + SP_OFF_SK_NUM);
    u64 a0 = e->a[0];
    if (remote_from_sk) {
        bpf_probe_read_kernel(&rport, 2, (char *)sk + SP_OFF_SK_DPORT);
        rport = (rport >> 8) | ((rport & 0xff) << 8);
        a0 = family | ((u64)rport << 48);
        if (family == 2) {
            u32 d = 0;
            bpf_probe_read_kernel(&d, 4, (char *)sk + SP_OFF_SK_DADDR);
            e->a[1] = d;
        } else if (family == 10) {
            bpf_probe_read_kernel(&e->a[1], 16, (char *)sk + SP_OFF_SK_V6_DADDR);
        }
    }
    a0 = (a0 & ~(0xffffULL << 16) & ~(0xffffULL << 32)) | ((u64)stype << 16) | ((u64)lport << 32);
    e->a[0] = a0;
    if (family == 2) {
        u32 s = 0;
        bpf_probe_read_kernel(&s, 4, (char *)sk + SP_OFF_SK_RCV_SADDR);
        e->a[3] = s;
    } else if (family == 10) {
        bpf_probe_read_kernel(&e->a[3], 16, (char *)sk + SP_OFF_SK_V6_RCV_SADDR);
    }
#endif
}
#endif

#ifdef SP_WANT_CONNECT
TRACEPOINT_PROBE(syscalls, sys_enter_connect)
{
    u16 family = 0;
    bpf_probe_read_user(&family, 2, args->uservaddr);
    if (family != 2 && family != 10 && family != 1)
        return 0;
    struct sp_event *e = sp_begin(SP_EV_CONNECT, SP_P_CONNECT);
    if (!e)
        return 0;
    u16 port = 0;
    bpf_probe_read_user(&port, 2, (char *)args->uservaddr + 2);
    port = (port >> 8) | ((port & 0xff) << 8);
    e->a[0] = family | ((u64)port << 48);
    if (family == 2) {
        u32 addr = 0;
        bpf_probe_read_user(&addr, 4, (char *)args->uservaddr + 4);
        e->a[1] = addr;
    } else if (family == 10) {
        bpf_probe_read_user(&e->a[1], 16, (char *)args->uservaddr + 8);
    } else {
        sp_put_str(e, (char *)args->uservaddr + 2, 1);
    }
    e->a[4] = args->fd;
    sp_stash(e);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_exit_connect)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sp_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    /* The local end is bound by now (also for a non-blocking connect in progress). */
    long fd = (long)e->a[4];
    e->a[4] = 0;
    sp_sock_details(e, fd, 0);
    return sp_finish(args->ret);
}
#endif

#ifdef SP_WANT_ACCEPT
static __always_inline int sp_accept_enter(u32 probe)
{
    struct sp_event *e = sp_begin(SP_EV_ACCEPT, probe);
    if (!e)
        return 0;
    sp_stash(e);
    return 0;
}

static __always_inline int sp_accept_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sp_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    if (ret >= 0)
        sp_sock_details(e, ret, 1);
    return sp_finish(ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_accept4) { return sp_accept_enter(SP_P_ACCEPT4); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept4) { return sp_accept_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_accept) { return sp_accept_enter(SP_P_ACCEPT); }
TRACEPOINT_PROBE(syscalls, sys_exit_accept) { return sp_accept_exit(args->ret); }
#endif

/* ---- credentials ---- */

#ifdef SP_WANT_SETUID
static __always_inline int sp_setid(u32 probe, u64 a0, u64 a1, u64 a2)
{
    struct sp_event *e = sp_begin(SP_EV_SETUID, probe);
    if (!e)
        return 0;
    e->a[0] = a0;
    e->a[1] = a1;
    e->a[2] = a2;
    sp_stash(e);
    return 0;
}

/* The header keeps the credentials before the call; a[3] = uid | euid << 32 and
 * a[4] = gid | egid << 32 are the ones after it. */
static __always_inline int sp_setid_exit(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sp_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    struct sp_event *now = sp_scratch();
    if (now) {
        now->flags = 0;
        sp_fill_creds(now);
        e->a[3] = now->uid | ((u64)now->euid << 32);
        e->a[4] = now->gid | ((u64)now->egid << 32);
    }
    return sp_finish(ret);
}

TRACEPOINT_PROBE(syscalls, sys_enter_setuid) { return sp_setid(SP_P_SETUID, args->uid, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_setuid) { return sp_setid_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_setreuid) { return sp_setid(SP_P_SETREUID, args->ruid, args->euid, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_setreuid) { return sp_setid_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_setresuid) { return sp_setid(SP_P_SETRESUID, args->ruid, args->euid, args->suid); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresuid) { return sp_setid_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_setgid) { return sp_setid(SP_P_SETGID, args->gid, 0, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_setgid) { return sp_setid_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_setregid) { return sp_setid(SP_P_SETREGID, args->rgid, args->egid, 0); }
TRACEPOINT_PROBE(syscalls, sys_exit_setregid) { return sp_setid_exit(args->ret); }
TRACEPOINT_PROBE(syscalls, sys_enter_setresgid) { return sp_setid(SP_P_SETRESGID, args->rgid, args->egid, args->sgid); }
TRACEPOINT_PROBE(syscalls, sys_exit_setresgid) { return sp_setid_exit(args->ret); }
#endif

#ifdef SP_WANT_CAPSET
TRACEPOINT_PROBE(syscalls, sys_enter_capset)
{
    struct sp_event *e = sp_begin(SP_EV_CAPSET, SP_P_CAPSET);
    if (!e)
        return 0;
    u32 hdr[2] = {};
    u32 data[6] = {};
    bpf_probe_read_user(&hdr, sizeof(hdr), args->header);
    bpf_probe_read_user(&data, sizeof(data), args->data);
    /* _LINUX_CAPABILITY_VERSION_3: two {effective, permitted, inheritable} u32 triples. */
    e->a[0] = data[0] | ((u64)data[3] << 32);
    e->a[1] = data[1] | ((u64)data[4] << 32);
    e->a[2] = data[2] | ((u64)data[5] << 32);
    e->a[3] = hdr[1];
    e->a[4] = hdr[0];
    sp_stash(e);
    return 0;
}
SP_EXIT(capset)
#endif

/* ---- bpf(2): program loads and map creations, not the map lookups of every tool ---- */

#ifdef SP_WANT_BPF
TRACEPOINT_PROBE(syscalls, sys_enter_bpf)
{
    int cmd = args->cmd;
    /* MAP_CREATE 0, PROG_LOAD 5, PROG_ATTACH 8, BTF_LOAD 18, RAW_TRACEPOINT_OPEN 17,
     * LINK_CREATE 28 */
    if (cmd != 0 && cmd != 5 && cmd != 8 && cmd != 17 && cmd != 18 && cmd != 28)
        return 0;
    struct sp_event *e = sp_begin(SP_EV_BPF, SP_P_BPF);
    if (!e)
        return 0;
    u32 head[4] = {};
    bpf_probe_read_user(&head, sizeof(head), args->uattr);
    e->a[0] = cmd;
    e->a[1] = head[0]; /* prog_type or map_type */
    e->a[2] = head[1]; /* insn_cnt or key_size */
    u32 off = cmd == 5 ? 48 : (cmd == 0 ? 28 : 0);
    if (off) {
        char name[16] = {};
        bpf_probe_read_user(&name, sizeof(name), (char *)args->uattr + off);
        name[15] = 0;
        sp_put_str(e, name, 0);
    }
    sp_stash(e);
    return 0;
}
SP_EXIT(bpf)
#endif

/* ---- kernel modules (only where the kernel has module syscalls' tracepoints) ---- */

#if defined(SP_WANT_MODULE_LOAD) && defined(SP_HAVE_FINIT_MODULE)
TRACEPOINT_PROBE(syscalls, sys_enter_finit_module)
{
    struct sp_event *e = sp_begin(SP_EV_MODULE_LOAD, SP_P_FINIT_MODULE);
    if (!e)
        return 0;
    e->a[0] = args->fd;
    e->a[1] = args->flags;
    e->flags |= SP_F_FD_PATH;
    sp_put_str(e, args->uargs, 1);
    sp_stash(e);
    return 0;
}
SP_EXIT(finit_module)
#endif
#if defined(SP_WANT_MODULE_LOAD) && defined(SP_HAVE_INIT_MODULE)
TRACEPOINT_PROBE(syscalls, sys_enter_init_module)
{
    struct sp_event *e = sp_begin(SP_EV_MODULE_LOAD, SP_P_INIT_MODULE);
    if (!e)
        return 0;
    e->a[0] = args->len;
    sp_put_str(e, args->uargs, 1);
    sp_stash(e);
    return 0;
}
SP_EXIT(init_module)
#endif

/* ---- ptrace: requests that take control or write; not the reads of every debugger step ---- */

#ifdef SP_WANT_PTRACE
TRACEPOINT_PROBE(syscalls, sys_enter_ptrace)
{
    long req = args->request;
    /* POKETEXT 4, POKEDATA 5, POKEUSER 6, SETREGS 13, SETFPREGS 15, ATTACH 16,
     * SETREGSET 0x4205, SEIZE 0x4206 */
    if (req != 4 && req != 5 && req != 6 && req != 13 && req != 15 && req != 16 &&
        req != 0x4205 && req != 0x4206)
        return 0;
    struct sp_event *e = sp_begin(SP_EV_PTRACE, SP_P_PTRACE);
    if (!e)
        return 0;
    e->a[0] = req;
    e->a[1] = args->pid;
    sp_stash(e);
    return 0;
}
SP_EXIT(ptrace)
#endif

#ifdef SP_WANT_MOUNT
TRACEPOINT_PROBE(syscalls, sys_enter_mount)
{
    struct sp_event *e = sp_begin(SP_EV_MOUNT, SP_P_MOUNT);
    if (!e)
        return 0;
    e->a[0] = SP_AT_FDCWD;
    e->a[1] = args->flags;
    sp_put_str(e, args->dir_name, 1);
    sp_put_str(e, args->dev_name, 1);
    sp_put_str(e, args->type, 1);
    sp_stash(e);
    return 0;
}
SP_EXIT(mount)
#endif

/* ---- authentication results: uprobes on libpam ---- */

#ifdef SP_WANT_AUTH
static __always_inline int sp_pam_enter(struct pt_regs *ctx, u64 which)
{
    if (sp_self())
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 pamh = PT_REGS_PARM1(ctx);
    pamh = (pamh & ~1ULL) | which;  /* pam_handle is 8-aligned: the low bit says which call */
    pam_calls.update(&tid, &pamh);
    return 0;
}

int sp_pam_auth_enter(struct pt_regs *ctx) { return sp_pam_enter(ctx, 0); }
int sp_pam_acct_enter(struct pt_regs *ctx) { return sp_pam_enter(ctx, 1); }

int sp_pam_return(struct pt_regs *ctx)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *saved = pam_calls.lookup(&tid);
    if (!saved)
        return 0;
    u64 which = *saved & 1;
    char *pamh = (char *)(*saved & ~1ULL);
    pam_calls.delete(&tid);
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    sp_fill(e, SP_EV_AUTH, which ? SP_P_PAM_ACCT_MGMT : SP_P_PAM_AUTHENTICATE);
    if (!sp_pre_filter(e, sp_cfg(SP_EV_AUTH)))
        return 0;
    e->ret = (int)PT_REGS_RC(ctx);
    e->flags |= SP_F_RET;
    const char *p = 0;
    bpf_probe_read_user(&p, sizeof(p), pamh + SP_PAM_OFF_SERVICE);
    sp_put_str(e, p, 1);
    p = 0;
    bpf_probe_read_user(&p, sizeof(p), pamh + SP_PAM_OFF_USER);
    sp_put_str(e, p, 1);
    p = 0;
    bpf_probe_read_user(&p, sizeof(p), pamh + SP_PAM_OFF_RHOST);
    sp_put_str(e, p, 1);
    p = 0;
    bpf_probe_read_user(&p, sizeof(p), pamh + SP_PAM_OFF_RUSER);
    sp_put_str(e, p, 1);
    p = 0;
    bpf_probe_read_user(&p, sizeof(p), pamh + SP_PAM_OFF_TTY);
    sp_put_str(e, p, 1);
    sp_emit(e);
    return 0;
}
#endif
