/* secpolicy.bpf.c: every probe of the live monitor, compiled once by bcc. Which probes exist
 * is chosen with -DSP_WANT_<TYPE> from the loaded rules; kernel struct offsets come from the
 * running kernel's BTF as -DSP_OFF_* (never from the build headers); filters live in maps.
 *
 * Most syscalls of one kind share one program (sp_enter_path, sp_exit_path, ...), attached by
 * user space to each of their tracepoints: the program tells them apart by the syscall number
 * in its context. That keeps what bcc compiles and the kernel verifies small. */
#include <uapi/linux/ptrace.h>
#include <linux/capability.h>
#include <asm/unistd.h>
#include "secpolicy.h"

/* The ring buffer's size as compiled; user space creates it with the size asked for. */
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

/* Syscalls newer than the headers bcc may compile against; they have one number on every
 * architecture (syscalls added since Linux 5.1 do). */
#ifndef __NR_openat2
#define __NR_openat2 437
#endif
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_setxattrat
#define __NR_setxattrat 463
#endif
#ifndef __NR_removexattrat
#define __NR_removexattrat 466
#endif

#define SP_AT_FDCWD -100
#define SP_AT_EMPTY_PATH 0x1000
/* Keeps clang from dropping a bounds mask it can prove redundant, which the verifier needs. */
#define sp_barrier_var(v) asm volatile("" : "+r"(v))

/* The context of any syscall tracepoint, as a program shared by several of them sees it. */
struct sp_enter_ctx {
    u64 common;
    int nr;
    int pad;
    u64 args[6];
};
struct sp_exit_ctx {
    u64 common;
    int nr;
    int pad;
    long ret;
};

BPF_RINGBUF_OUTPUT(events, SP_RINGBUF_PAGES);
/* Nothing is recorded until user space has filled the filter maps and set armed[0].on, nor
 * sent after it clears it; the monitor's own process (self_tgid) is never recorded. Values,
 * not compile-time constants: the compiled programs do not depend on the run (reusable). */
BPF_ARRAY(armed, struct sp_armed, 1);
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
/* A syscall that only a failure can make interesting (e.g. "open refused with EACCES"), and
 * an exec until it succeeds or fails: its arguments wait for sys_exit as a few words, and the
 * record is built there only when needed. Copying a whole record into `pending` for each of
 * the storm of successful opens is what the monitor's openat cost was mostly made of. */
struct sp_lite {
    u64 path;
    u64 a[4];
    u32 type;
    u32 probe;
    u32 mask;
    u32 fd_only;
    u32 in_hash;
    u32 link; /* a write-open to test, if it succeeds, on the file it opened (sp_may_link) */
};
/* Where they wait: by thread id in a preallocated hash, or in the task's own storage, which is
 * cheaper per call but costs an allocation the first time a task uses it: so only a task that
 * has lived SP_SETTLED_NS (a long-running program, not one of the freshly forked and exec'd
 * processes of a shell) gets task storage. */
BPF_HASH(pending_lite, u32, struct sp_lite, SP_PENDING_MAX);
#ifdef SP_TASK_STORAGE
BPF_TASK_STORAGE(lite_store, struct sp_lite);
#endif
#ifndef SP_SETTLED_NS
#define SP_SETTLED_NS 50000000ULL
#endif

static __always_inline int sp_task_settled(void)
{
#if defined(SP_TASK_STORAGE) && defined(SP_OFF_TASK_START_TIME)
    u64 start = 0;
    bpf_probe_read_kernel(&start, sizeof(start), (char *)bpf_get_current_task() + SP_OFF_TASK_START_TIME);
    return bpf_ktime_get_ns() - start > SP_SETTLED_NS;
#else
    return 0;
#endif
}

/* Keep `src` for this thread until sys_exit; 0 when there is no room (counted as lost). */
static __always_inline int sp_lite_put(struct sp_lite *src, u32 tid)
{
#ifdef SP_TASK_STORAGE
    struct sp_lite *l = lite_store.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    if (!l && sp_task_settled())
        l = lite_store.task_storage_get(bpf_get_current_task_btf(), 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
    if (l) {
        src->in_hash = 0;
        __builtin_memcpy(l, src, sizeof(*l));
        return 1;
    }
#endif
    src->in_hash = 1;
    return pending_lite.update(&tid, src) == 0;
}

/* What this thread keeps, or 0. */
static __always_inline struct sp_lite *sp_lite_find(u32 tid)
{
#ifdef SP_TASK_STORAGE
    struct sp_lite *l = lite_store.task_storage_get(bpf_get_current_task_btf(), 0, 0);
    if (l && l->type)
        return l;
#endif
    return pending_lite.lookup(&tid);
}

static __always_inline void sp_lite_done(struct sp_lite *l, u32 tid)
{
    if (l->in_hash)
        pending_lite.delete(&tid);
    else
        l->type = 0;
}

BPF_ARRAY(type_cfg, struct sp_type_cfg, SP_EV_MAX);
BPF_HASH(uid_filter, struct sp_uid_key, u8, 4096);
BPF_HASH(comm_filter, struct sp_comm_key, u8, 4096);
BPF_ARRAY(prefixes, struct sp_prefix, SP_MAX_PREFIXES);
BPF_HASH(pam_calls, u32, u64, 1024);

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
    /* Disarmed (stopping): nothing more is sent, so the counters user space reads last are
     * exact, whatever syscalls were still under way. */
    struct sp_armed *on = armed.lookup(&zero);
    if (!on || !on->on)
        return;
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
#if SP_OFF_CRED_EGID == SP_OFF_CRED_EUID + 4
        bpf_probe_read_kernel(&e->euid, 8, (char *)cred + SP_OFF_CRED_EUID); /* euid, egid */
#else
        bpf_probe_read_kernel(&e->euid, 4, (char *)cred + SP_OFF_CRED_EUID);
        bpf_probe_read_kernel(&e->egid, 4, (char *)cred + SP_OFF_CRED_EGID);
#endif
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
    e->start_time = 0;
#ifdef SP_OFF_TASK_START_TIME
    /* the thread group leader's: the process's start, whichever thread the record is of */
    void *leader = 0;
#ifdef SP_OFF_TASK_GROUP_LEADER
    bpf_probe_read_kernel(&leader, sizeof(leader), (char *)task + SP_OFF_TASK_GROUP_LEADER);
#endif
    bpf_probe_read_kernel(&e->start_time, 8, (char *)(leader ? leader : task) + SP_OFF_TASK_START_TIME);
#endif
#if defined(SP_OFF_TASK_REAL_PARENT) && defined(SP_OFF_TASK_TGID)
    void *parent = 0;
    bpf_probe_read_kernel(&parent, sizeof(parent), (char *)task + SP_OFF_TASK_REAL_PARENT);
    if (parent) {
        bpf_probe_read_kernel(&e->ppid, 4, (char *)parent + SP_OFF_TASK_TGID);
        e->flags |= SP_F_PPID;
    }
#endif
#if defined(SP_OFF_TASK_LOGINUID) && defined(SP_OFF_TASK_SESSIONID)
#if SP_OFF_TASK_SESSIONID == SP_OFF_TASK_LOGINUID + 4
    bpf_probe_read_kernel(&e->auid, 8, (char *)task + SP_OFF_TASK_LOGINUID); /* auid, session */
#else
    bpf_probe_read_kernel(&e->auid, 4, (char *)task + SP_OFF_TASK_LOGINUID);
    bpf_probe_read_kernel(&e->session, 4, (char *)task + SP_OFF_TASK_SESSIONID);
#endif
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

/* ---- paths resolved in the kernel, at the time of the call ----
 * A descriptor, a directory descriptor or the working directory is turned into its absolute
 * path by walking the dentry chain up to the root of its mount and crossing mounts up to the
 * root of the mount tree, as d_path() does (as Tracee does too, since bpf_d_path is not
 * allowed in tracepoint programs). No lock is taken: a rename racing the walk may give a
 * mixed path, which is also what reading /proc/PID/fd would risk, later. */

#ifdef SP_KPATH
BPF_PERCPU_ARRAY(pathbuf, struct sp_pathbuf, 1);
/* struct dentry has d_parent and then d_name {hash, len; name} in one 24-byte span (as in
 * every kernel since 3.x): read together. */
#if SP_OFF_DENTRY_D_NAME == SP_OFF_DENTRY_D_PARENT + 8 && SP_OFF_QSTR_LEN == 4 && SP_OFF_QSTR_NAME == 8
#define SP_DENTRY_SPAN 1
#else
#define SP_DENTRY_SPAN 0
#endif

static __always_inline void *sp_read_ptr(void *base, u32 off)
{
    void *p = 0;
    bpf_probe_read_kernel(&p, sizeof(p), (char *)base + off);
    return p;
}

/* A dentry's parent, and its name's length and pointer: one read where d_parent and d_name
 * stand together (SP_DENTRY_SPAN), else three. */
static __always_inline void *sp_dentry_up(void *dentry, u32 *len, const char **name)
{
#if SP_DENTRY_SPAN
    u64 span[3] = {};
    bpf_probe_read_kernel(&span, sizeof(span), (char *)dentry + SP_OFF_DENTRY_D_PARENT);
    *len = span[1] >> 32;
    *name = (const char *)span[2];
    return (void *)span[0];
#else
    bpf_probe_read_kernel(len, sizeof(*len), (char *)dentry + SP_OFF_DENTRY_D_NAME + SP_OFF_QSTR_LEN);
    *name = sp_read_ptr(dentry, SP_OFF_DENTRY_D_NAME + SP_OFF_QSTR_NAME);
    return sp_read_ptr(dentry, SP_OFF_DENTRY_D_PARENT);
#endif
}

#ifdef SP_TASK_STORAGE
/* The task as a typed pointer (the kernel's BTF): the verifier knows what each of its fields
 * points to, so a pointer read through it, and through what it points to, is a plain load the
 * JIT makes safe, not a helper call. The offsets come from the same BTF. Where the kernel does
 * not allow it, loading fails and the build without SP_TASK_STORAGE reads them by helper. */
#define SP_BTF_LD(base, off) (*(volatile u64 *)((u64)(base) + (off)))
#define SP_BTF_LD32(base, off) (*(volatile u32 *)((u64)(base) + (off)))
#endif

/* The struct file behind descriptor fd of the current task, or 0. */
static __always_inline void *sp_file_of(long fd)
{
    if (fd < 0)
        return 0;
#ifdef SP_TASK_STORAGE
    /* task->files->fdt, its max_fds and its fd array: three loads; the array holds untyped
     * pointers, so the one entry is read by helper */
    u64 files = SP_BTF_LD(bpf_get_current_task_btf(), SP_OFF_TASK_FILES);
    if (!files)
        return 0;
    u64 fdt = SP_BTF_LD(files, SP_OFF_FILES_FDT);
    if (!fdt)
        return 0;
    u32 max = SP_BTF_LD32(fdt, SP_OFF_FDT_MAX_FDS);
    void **fdarr = (void **)SP_BTF_LD(fdt, SP_OFF_FDT_FD);
#else
    void *files = sp_read_ptr(sp_task(), SP_OFF_TASK_FILES);
    if (!files)
        return 0;
    void *fdt = sp_read_ptr(files, SP_OFF_FILES_FDT);
    if (!fdt)
        return 0;
#if SP_OFF_FDT_MAX_FDS == 0 && SP_OFF_FDT_FD == 8
    /* max_fds and fd side by side (every kernel since 2.6): one read */
    u64 mf[2] = {};
    bpf_probe_read_kernel(&mf, sizeof(mf), fdt);
    u32 max = (u32)mf[0];
    void **fdarr = (void **)mf[1];
#else
    u32 max = 0;
    bpf_probe_read_kernel(&max, sizeof(max), (char *)fdt + SP_OFF_FDT_MAX_FDS);
    void **fdarr = sp_read_ptr(fdt, SP_OFF_FDT_FD);
#endif
#endif
    if (fd >= max)
        return 0;
    if (!fdarr)
        return 0;
    void *file = 0;
    bpf_probe_read_kernel(&file, sizeof(file), &fdarr[fd]);
    return file;
}

/* Append the absolute path of the struct path at `path` (a kernel address) as one string.
 * 0 when it cannot be resolved: no path, a pseudo file (pipe, socket), deeper or longer than
 * this walk goes. With `pseudo` (an executable), a file of no directory (a memfd, whose dentry
 * is its own parent) is named as d_path() and auditd's exe= name it: "/memfd:NAME (deleted)".
 * With `fs_root` (a dentry), the path within the file system instead, mounts not crossed: the
 * dentries' parents up to fs_root (0 when another root comes first), as an audit directory
 * watch follows them. */
static __always_inline int sp_put_kpath(struct sp_event *e, void *path, int pseudo, void *fs_root)
{
    u32 zero = 0;
    struct sp_pathbuf *pb = pathbuf.lookup(&zero);
    if (!pb || !path)
        return 0;
    void *vfsmnt = sp_read_ptr(path, SP_OFF_PATH_MNT);
    void *dentry = sp_read_ptr(path, SP_OFF_PATH_DENTRY);
    if (!vfsmnt || !dentry)
        return 0;
    void *mnt = (char *)vfsmnt - SP_OFF_MOUNT_MNT;
    void *mnt_root = sp_read_ptr(vfsmnt, SP_OFF_VFSMOUNT_MNT_ROOT);
    u32 end = SP_PATH_HALF - 2;
    u32 pos = end;
    pb->b[SP_PATH_HALF - 2] = 0;
    int complete = 0;
#pragma clang loop unroll(disable)
    for (int i = 0; i < SP_PATH_DEPTH; i++) {
        u32 len = 0;
        const char *name = 0;
        void *parent = sp_dentry_up(dentry, &len, &name);
        if (fs_root) {
            if (dentry == fs_root) {
                complete = 1;
                break;
            }
        } else if (dentry == mnt_root) {
            void *mparent = sp_read_ptr(mnt, SP_OFF_MOUNT_MNT_PARENT);
            if (!mparent || mparent == mnt) {
                complete = 1; /* the root of the mount tree */
                break;
            }
            dentry = sp_read_ptr(mnt, SP_OFF_MOUNT_MNT_MOUNTPOINT);
            mnt = mparent;
            mnt_root = sp_read_ptr((char *)mnt + SP_OFF_MOUNT_MNT, SP_OFF_VFSMOUNT_MNT_ROOT);
            continue;
        }
        int alone = 0;
        if (dentry == parent || !parent) {
            /* a disconnected or pseudo dentry: not a path, but for a memfd executable */
            if (!pseudo || i != 0 || !parent)
                break;
            alone = 1;
            __builtin_memcpy(&pb->b[SP_PATH_HALF - 12], " (deleted)", 10);
            pos = end - 10;
        }
        len &= 255;
        if (pos < len + 1)
            break; /* longer than the buffer */
        pos -= len + 1;
        sp_barrier_var(pos);
        pos &= SP_PATH_HALF - 1;
        pb->b[pos] = '/';
        bpf_probe_read_kernel(&pb->b[(pos + 1) & (SP_PATH_HALF - 1)], len, name);
        dentry = parent;
        if (alone) {
            complete = len != 0;
            break;
        }
    }
    if (!complete)
        return 0;
    if (pos == end) {
        pos = end - 1;
        pb->b[SP_PATH_HALF - 3] = '/';
    }
    u32 off = e->str_len;
    if (off >= SP_STR_MAX) {
        e->flags |= SP_F_TRUNCATED;
        return 0;
    }
    u32 n = end + 1 - pos;
    sp_barrier_var(n);
    n &= SP_PATH_HALF - 1;
    sp_barrier_var(pos);
    pos &= SP_PATH_HALF - 1;
    sp_barrier_var(off);
    off &= SP_STR_MAX - 1;
    if (!n || bpf_probe_read_kernel(&e->str[off], n, &pb->b[pos]) != 0)
        return 0;
    e->str_len = off + n;
    e->nstr += 1;
    return 1;
}

/* The struct path (a kernel address) of descriptor fd, or of the working directory for
 * AT_FDCWD; 0 when there is none. */
static __always_inline void *sp_path_of(long fd)
{
    if (fd == SP_AT_FDCWD) {
#ifdef SP_TASK_STORAGE
        void *fs = (void *)SP_BTF_LD(bpf_get_current_task_btf(), SP_OFF_TASK_FS);
#else
        void *fs = sp_read_ptr(sp_task(), SP_OFF_TASK_FS);
#endif
        return fs ? (char *)fs + SP_OFF_FS_PWD : 0;
    }
    void *file = sp_file_of(fd);
    return file ? (char *)file + SP_OFF_FILE_F_PATH : 0;
}

/* The struct path of the current task's executable (mm->exe_file): what auditd and
 * /proc/PID/exe name. */
static __always_inline void *sp_exe_path(void)
{
#ifdef SP_TASK_STORAGE
    u64 mm = SP_BTF_LD(bpf_get_current_task_btf(), SP_OFF_TASK_MM);
    if (!mm)
        return 0;
    void *file = (void *)SP_BTF_LD(mm, SP_OFF_MM_EXE_FILE);
#else
    void *mm = sp_read_ptr(sp_task(), SP_OFF_TASK_MM);
    if (!mm)
        return 0;
    void *file = sp_read_ptr(mm, SP_OFF_MM_EXE_FILE);
#endif
    return file ? (char *)file + SP_OFF_FILE_F_PATH : 0;
}

/* The first components (the name just below `/`) of the write type's prefixes that accept a
 * success, zero-padded, and the stems of those that end inside their first component (`/etc`:
 * a first component that starts with `etc`), as user space fills them (bpf_plan.link_heads),
 * with link_cfg[0].on = 1 once they are all there. Left off (a prefix `/` or more stems than
 * room), every write-open kept for its opened file gets the full test. */
BPF_HASH(link_heads, struct sp_head, u8, SP_MAX_PREFIXES);
BPF_ARRAY(link_cfg, struct sp_link_cfg, 1);
/* The write type's watched files by inode, as user space finds them (and keeps them current
 * when a file is replaced): see SP_WATCHED_INODES. */
BPF_HASH(watched_inodes, struct sp_inode_key, struct sp_inode_path, SP_WATCHED_INODES);

/* struct path's mnt and dentry, and struct mount's mnt_parent, mnt_mountpoint and mnt.mnt_root,
 * each side by side (as in every kernel since 3.3): read together. */
#if SP_OFF_PATH_DENTRY == SP_OFF_PATH_MNT + 8 && SP_OFF_MOUNT_MNT_MOUNTPOINT == SP_OFF_MOUNT_MNT_PARENT + 8 && \
    SP_OFF_MOUNT_MNT == SP_OFF_MOUNT_MNT_PARENT + 16 && SP_OFF_VFSMOUNT_MNT_ROOT == 0
#define SP_MOUNT_SPAN 1
#else
#define SP_MOUNT_SPAN 0
#endif

/* A mount's parent, mountpoint and root dentry; mnt is a struct mount. */
static __always_inline void sp_mount_span(void *mnt, u64 m[3])
{
#if SP_MOUNT_SPAN
    bpf_probe_read_kernel(m, 24, (char *)mnt + SP_OFF_MOUNT_MNT_PARENT);
#else
    m[0] = (u64)sp_read_ptr(mnt, SP_OFF_MOUNT_MNT_PARENT);
    m[1] = (u64)sp_read_ptr(mnt, SP_OFF_MOUNT_MNT_MOUNTPOINT);
    m[2] = (u64)sp_read_ptr((char *)mnt + SP_OFF_MOUNT_MNT, SP_OFF_VFSMOUNT_MNT_ROOT);
#endif
}

/* 1 when a top-level component (name, len: a kernel string) is one of the link heads or starts
 * with one of their stems. */
static __always_inline int sp_head_ok(struct sp_link_cfg *lc, const char *name, u32 len)
{
    /* a name longer than the key is no first component in the map (user space keeps such
     * a component as a stem), but its first bytes may start a stem */
    u32 n = len < SP_HEAD_MAX ? len : SP_HEAD_MAX - 1;
    struct sp_head k = {};
    sp_barrier_var(n);
    n &= SP_HEAD_MAX - 1;
    bpf_probe_read_kernel(&k.name, n, name);
    if (len < SP_HEAD_MAX && link_heads.lookup(&k))
        return 1;
    u64 w = *(u64 *)k.name;
#pragma clang loop unroll(disable)
    for (u32 i = 0; i < SP_HEAD_STEMS; i++) {
        if (i >= lc->nstems)
            break;
        if (!((w ^ lc->stem[i]) & lc->stem_mask[i]))
            return 1;
    }
    return 0;
}

/* What the pre-filter's walk found besides the top-level component: whether the file is to be
 * named by its path in the file system of the task's root directory. Reached through a bind
 * mount of one of that file system's directories, the file has a second path (`mount --bind
 * /etc /tmp/m; echo >> /tmp/m/shadow` writes /etc/shadow, and an audit directory watch on /etc
 * records it: it follows the dentries' parents, not the mounts). */
struct sp_walk {
    void *fs_root; /* the root dentry of that file system, where the path starts */
    u32 fs_view;   /* 1: the file's path is its path in the root's file system, not the mounts' */
};

/* The root dentry of the task's root directory when that is the root of a mount (not a chroot
 * into a directory), else 0. */
static __always_inline void *sp_root_fs_root(void)
{
#ifdef SP_OFF_FS_ROOT
#ifdef SP_TASK_STORAGE
    u64 fs = SP_BTF_LD(bpf_get_current_task_btf(), SP_OFF_TASK_FS);
    if (!fs)
        return 0;
    void *rmnt = (void *)SP_BTF_LD(fs, SP_OFF_FS_ROOT + SP_OFF_PATH_MNT);
    void *rdentry = (void *)SP_BTF_LD(fs, SP_OFF_FS_ROOT + SP_OFF_PATH_DENTRY);
#else
    void *fs = sp_read_ptr(sp_task(), SP_OFF_TASK_FS);
    if (!fs)
        return 0;
    void *rmnt = sp_read_ptr(fs, SP_OFF_FS_ROOT + SP_OFF_PATH_MNT);
    void *rdentry = sp_read_ptr(fs, SP_OFF_FS_ROOT + SP_OFF_PATH_DENTRY);
#endif
    if (!rmnt || !rdentry || sp_read_ptr(rmnt, SP_OFF_VFSMOUNT_MNT_ROOT) != rdentry)
        return 0;
    return rdentry;
#else
    return 0;
#endif
}

/* 0 when the file at `path` (a struct path) cannot be under any of those prefixes: its
 * top-level component, found by the walk sp_put_kpath makes but reading only the dentries' and
 * mounts' pointers (or, through a bind mount, in the root's file system: walk->fs_view), is
 * none of their first components and starts with none of their stems. One name read instead of
 * one per component, and no copy or prefix test: most write-opens outside the watched trees
 * stop here. A walk sp_put_kpath could not finish is 0 too (it would give no path); 1
 * otherwise (test that path in full). */
static __always_inline int sp_link_head_ok(void *path, struct sp_walk *walk)
{
    u32 zero = 0;
    struct sp_link_cfg *lc = link_cfg.lookup(&zero);
    if (!path)
        return 0;
    /* Every kernel read is a helper call, which is most of what this costs: one read per
     * dentry (its parent and name together), one per mount. */
#if SP_MOUNT_SPAN
    u64 pm[2] = {};
    bpf_probe_read_kernel(&pm, sizeof(pm), (char *)path + SP_OFF_PATH_MNT);
    void *vfsmnt = (void *)pm[0];
    void *dentry = (void *)pm[1];
#else
    void *vfsmnt = sp_read_ptr(path, SP_OFF_PATH_MNT);
    void *dentry = sp_read_ptr(path, SP_OFF_PATH_DENTRY);
#endif
    if (!vfsmnt || !dentry)
        return 0;
    void *mnt = (char *)vfsmnt - SP_OFF_MOUNT_MNT;
    u64 m[3] = {};
    sp_mount_span(mnt, m);
    u32 len = 0;
    const char *name = 0;
    int complete = 0;
    /* the parent of the first mount root crossed that is a directory bound there */
    void *bound_up = 0;
    u32 blen = 0;
    const char *bname = 0;
    /* one iteration per component or mount crossed, as in sp_put_kpath: the same files finish */
#pragma clang loop unroll(disable)
    for (int i = 0; i < SP_PATH_DEPTH; i++) {
        if (dentry == (void *)m[2]) {
            void *mparent = (void *)m[0];
            if (!mparent || mparent == mnt) {
                complete = 1;
                break;
            }
            /* a mount's root with a parent is a directory bound there (`mount --bind`) */
            if (!bound_up) {
                u32 rlen = 0;
                const char *rname = 0;
                void *rparent = sp_dentry_up(dentry, &rlen, &rname);
                if (rparent && rparent != dentry) {
                    bound_up = rparent;
                    blen = rlen;
                    bname = rname;
                }
            }
            dentry = (void *)m[1];
            mnt = mparent;
            sp_mount_span(mnt, m);
            continue;
        }
        u32 dlen = 0;
        const char *dname = 0;
        void *parent = sp_dentry_up(dentry, &dlen, &dname);
        if (dentry == parent || !parent)
            break;
        len = dlen;
        name = dname;
        dentry = parent;
    }
    if (!complete)
        return 0;
    /* Through a bind mount of a directory of the root directory's file system, the file is
     * named by its path in that file system, as an audit directory watch sees it (the
     * dentries' parents, not the mounts): the top-level component is then the one found from
     * the bound directory's parents up to the root directory. Where they do not reach it (a
     * directory of another file system bound there, a chroot), the mounts' path stays. */
    if (bound_up)
        walk->fs_root = sp_root_fs_root();
    if (walk->fs_root) {
        const char *fname = bname;
        u32 flen = blen;
        dentry = bound_up;
#pragma clang loop unroll(disable)
        for (int i = 0; i < SP_PATH_DEPTH; i++) {
            if (dentry == walk->fs_root) {
                walk->fs_view = 1;
                name = fname;
                len = flen;
                break;
            }
            u32 dlen = 0;
            const char *dname = 0;
            void *parent = sp_dentry_up(dentry, &dlen, &dname);
            if (dentry == parent || !parent)
                break;
            flen = dlen;
            fname = dname;
            dentry = parent;
        }
    }
    if (!lc || !lc->on || !name)
        return 1; /* no pre-filter, or the root itself */
    return sp_head_ok(lc, name, len);
}

#endif

/* Append the path a syscall names: by descriptor (fd_only 1: the descriptor's own path), or by
 * (dfd, upath), made absolute in the kernel when upath is relative, or empty (AT_EMPTY_PATH:
 * the descriptor itself); fd_only 2 (openat2 with RESOLVE_IN_ROOT): an absolute upath too is
 * taken beneath dfd, as the kernel resolves it. `user` 0: upath is kernel memory (the copy
 * io_uring made of a request's path). 0 when the user string could not be read (not resident
 * yet: read again at sys_exit). Without BTF offsets, a descriptor goes up as
 * SP_F_FD_PATH (a[0]) and a relative path as it is, for user space to resolve from /proc. One
 * walk per call site: the walk is what costs the verifier most. */
static __always_inline int sp_put_path_from(struct sp_event *e, long dfd, const char *upath, int fd_only,
                                            int user)
{
    u32 start = e->str_len;
    char c = 0;
    if (fd_only != 1) {
        /* Read as it is: absolute (the common case) is done. */
        if (!sp_put_str(e, upath, user))
            return 0;
        c = e->str[start & (SP_STR_BUF - 1)];
        if ((c == '/' && fd_only != 2) || start >= SP_STR_MAX)
            return 1;
        /* Relative or empty: the base first, then the name again after it. */
        e->str_len = start;
        e->nstr -= 1;
    }
    int based = 0;
#ifdef SP_KPATH
    based = sp_put_kpath(e, sp_path_of(dfd), 0, 0);
#endif
    if (fd_only == 1) {
        if (based) {
            e->flags |= SP_F_KPATH;
        } else {
            e->flags |= SP_F_FD_PATH;
            sp_put_str(e, 0, 0);
        }
        return 1;
    }
    if (!based)
        return sp_put_str(e, upath, user); /* user space will resolve what it can */
    e->flags |= SP_F_KPATH;
    if (!c)
        return 1;
    /* base + "/" + name, joined over the base's NUL. The root "/" keeps its own slash (a name
     * written over it would be relative); a name that brings its slash (beneath dfd) gets none. */
    u32 end = e->str_len - 1;
    if (c == '/') {
        if (end == start + 1)
            end = start;
    } else if (end != start + 1) {
        sp_barrier_var(end);
        e->str[end & (SP_STR_BUF - 1)] = '/';
        end += 1;
    }
    e->str_len = end;
    e->nstr -= 1;
    return sp_put_str(e, upath, user);
}

/* A path given to a syscall (user memory). */
static __always_inline int sp_put_path(struct sp_event *e, long dfd, const char *upath, int fd_only)
{
    return sp_put_path_from(e, dfd, upath, fd_only, 1);
}

/* ---- cheap filters compiled from the rules ---- */

/* 1 when the current task must not be recorded: the monitor itself, or not armed yet. */
static __always_inline int sp_self(void)
{
    u32 zero = 0;
    struct sp_armed *a = armed.lookup(&zero);
    if (!a || !a->on)
        return 1;
    return (bpf_get_current_pid_tgid() >> 32) == a->self_tgid;
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
#pragma clang loop unroll(disable)
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
#pragma clang loop unroll(disable)
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
#pragma clang loop unroll(disable)
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

/* A plain sys_exit: the pending record of this thread gets its result. */
int sp_exit_plain(struct sp_exit_ctx *ctx)
{
    return sp_finish(ctx->ret);
}

/* ---- path syscalls: open, write, unlink, chmod, chown, setxattr (and rename below) ---- */

#if defined(SP_WANT_OPEN) || defined(SP_WANT_WRITE) || defined(SP_WANT_UNLINK) || \
    defined(SP_WANT_CHMOD) || defined(SP_WANT_CHOWN) || defined(SP_WANT_SETXATTR) || \
    defined(SP_WANT_RENAME)
#define SP_PATHS 1

/* One path syscall's arguments: the path by (dfd, path) or by descriptor (fd_only, dfd), the
 * numbers the decoder wants in a[1..3], and for xattrs the attribute name pointer in a[1]. */
struct sp_call {
    u32 type;
    u32 probe;
    u32 fd_only;
    u32 pad;
    long dfd;
    u64 path;
    u64 a1;
    u64 a2;
    u64 a3;
};

/* The call being decoded, per CPU. Kept in a map rather than on the stack on purpose: the
 * verifier then knows nothing of the values each syscall's case stored, so the cases meet in
 * one state and the code after them is verified once, not once per syscall. */
BPF_PERCPU_ARRAY(calls, struct sp_call, 1);

/* The strings of a path record: the path, then for setxattr the attribute name. */
static __always_inline int sp_put_call_strings(struct sp_event *e, u32 type, u32 fd_only, long dfd,
                                               const char *path, u64 a1)
{
    int ok = sp_put_path(e, dfd, path, fd_only);
    if (type == SP_EV_SETXATTR)
        sp_put_str(e, (const char *)a1, 1);
    return ok;
}

/* rename's two paths: (a[0], a[4]) and (a[1], a[3]); `first` = where the second starts. One
 * loop, so that the path walk is inlined once. */
static __always_inline int sp_put_two_paths(struct sp_event *e, u32 *first)
{
    int ok = 1;
#pragma clang loop unroll(disable)
    for (int j = 0; j < 2; j++) {
        if (j == 1)
            *first = e->str_len;
        ok &= sp_put_path(e, (long)e->a[j], (const char *)e->a[j ? 3 : 4], 0);
    }
    return ok;
}

/* Paths that could not be read at sys_enter are read now that the kernel has faulted them
 * in (a[0] = dfd, a[4] = first pointer; for rename a[1] = new dfd, a[3] = second). They are
 * rare, so they go up without a path test (user space applies it): the exit program stays
 * small. */
static __always_inline int sp_reread(struct sp_event *e)
{
    e->str_len = 0;
    e->nstr = 0;
    e->flags &= ~(SP_F_DEFER | SP_F_KPATH);
    if (e->type == SP_EV_RENAME) {
        u32 first = 0;
        sp_put_two_paths(e, &first);
        return 1;
    }
    /* an open's a[3] keeps openat2's RESOLVE_IN_ROOT */
    u32 mode = (e->type == SP_EV_OPEN || e->type == SP_EV_WRITE) && (e->a[3] & SP_RESOLVE_IN_ROOT) ? 2 : 0;
    sp_put_call_strings(e, e->type, mode, (long)e->a[0], (const char *)e->a[4], e->a[1]);
    return 1;
}

#ifdef SP_KPATH
#if defined(SP_OFF_FILE_F_INODE) && defined(SP_OFF_INODE_I_INO) && defined(SP_OFF_INODE_I_SB) && \
    defined(SP_OFF_SB_S_DEV) && defined(SP_OFF_INODE_I_NLINK)
/* The watched file that `file` (a struct file) is, by its inode, when it has another name (a
 * hard link) than the one it was opened by; 0 for any other file. A file of one name is named
 * by its path (a bind mount of the file itself is followed by the walk), so most files cost two
 * reads here and no lookup. */
static __always_inline struct sp_inode_path *sp_watched_inode(void *file)
{
    void *inode = sp_read_ptr(file, SP_OFF_FILE_F_INODE);
    if (!inode)
        return 0;
    u32 nlink = 0;
    bpf_probe_read_kernel(&nlink, sizeof(nlink), (char *)inode + SP_OFF_INODE_I_NLINK);
    if (nlink < 2)
        return 0;
    void *sb = sp_read_ptr(inode, SP_OFF_INODE_I_SB);
    if (!sb)
        return 0;
    struct sp_inode_key k = {};
    bpf_probe_read_kernel(&k.ino, sizeof(k.ino), (char *)inode + SP_OFF_INODE_I_INO);
    bpf_probe_read_kernel(&k.dev, sizeof(k.dev), (char *)sb + SP_OFF_SB_S_DEV);
    return watched_inodes.lookup(&k);
}

/* Append the watched path as a string of the record. */
static __always_inline int sp_put_watched(struct sp_event *e, struct sp_inode_path *ip)
{
    u32 n = ip->len;
    u32 off = e->str_len;
    if (n < 2 || n > SP_PREFIX_WORDS * 8 + 1 || off >= SP_STR_MAX - SP_PREFIX_WORDS * 8 - 1)
        return 0;
    sp_barrier_var(n);
    n &= 255;
    sp_barrier_var(off);
    off &= SP_STR_MAX - 1;
    if (bpf_probe_read_kernel(&e->str[off], n, ip->path) != 0)
        return 0;
    e->str_len = off + n;
    e->nstr += 1;
    return 1;
}
#else
static __always_inline struct sp_inode_path *sp_watched_inode(void *file) { return 0; }
static __always_inline int sp_put_watched(struct sp_event *e, struct sp_inode_path *ip) { return 0; }
#endif
#endif

/* A successful open names, after the path as given, the file the kernel opened (the new
 * descriptor's f_path, walked as for any descriptor): the truth where the path as given cannot
 * be read lexically (`..` after a symlink, a string cut at SP_PIECE_MAX, RESOLVE_IN_ROOT, a
 * chroot). Not for O_TMPFILE, which names its directory as auditd does. Only records that
 * passed the filters get here: the walk costs nothing to the opens dropped at sys_enter. */
static __always_inline void sp_put_opened(struct sp_event *e, long fd)
{
#ifdef SP_KPATH
    u32 probe = e->a[5] & 0xffffffff;
    if ((e->type != SP_EV_OPEN && e->type != SP_EV_WRITE) || fd < 0 || (e->a[1] & 020000000) ||
        (probe != SP_P_OPENAT && probe != SP_P_OPENAT2 && probe != SP_P_OPEN && probe != SP_P_CREAT))
        return;
    void *file = sp_file_of(fd);
    if (!file)
        return;
    /* a watched file written under another name (a hard link) is named by its watched path */
    struct sp_inode_path *ip = e->type == SP_EV_WRITE ? sp_watched_inode(file) : 0;
    if (ip) {
        if (sp_put_watched(e, ip))
            e->a[3] |= SP_OPENED_PATH | SP_NAMED_OPENED;
    } else if (sp_put_kpath(e, (char *)file + SP_OFF_FILE_F_PATH, 0, 0)) {
        e->a[3] |= SP_OPENED_PATH;
    }
#endif
}

/* A failed call kept as struct sp_lite: the record is built now, its header and path as they
 * are at sys_exit (the same task; the path is the buffer the kernel has just read). */
static __always_inline int sp_finish_lite(struct sp_lite *l, u32 tid, long ret)
{
    u32 type = l->type;
    u32 mask = l->mask;
    u64 linked = 0;
    u16 len = 0;
    u8 n = 0;
#ifdef SP_KPATH
    if (l->link && ret >= 0) {
        /* A write-open that succeeded, kept for the file it opened (sp_may_link): that file's
         * own path is the record's first string, and the clauses are tested on it instead. A
         * watched file reached under another name (a hard link) is named by its watched path. */
        struct sp_event *o = sp_scratch();
        if (!o) {
            sp_lite_done(l, tid);
            return 0;
        }
        o->str_len = 0;
        o->nstr = 0;
        o->flags = 0;
        void *file = sp_file_of(ret);
        void *opened = file ? (char *)file + SP_OFF_FILE_F_PATH : 0;
        struct sp_inode_path *ip = file ? sp_watched_inode(file) : 0;
        struct sp_walk w = {};
        int named = ip ? sp_put_watched(o, ip)
                       : sp_link_head_ok(opened, &w) && sp_put_kpath(o, opened, 0, w.fs_view ? w.fs_root : 0);
        if (!named || !(mask = sp_clauses(o, sp_cfg(type), 1, o->str_len, 0, 0))) {
            sp_lite_done(l, tid);
            return 0;
        }
        linked = SP_LINKED_PATH;
        len = o->str_len;
        n = o->nstr;
    }
#endif
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
    e->str_len = len;
    e->nstr = n;
    e->a[0] = l->a[0];
    e->a[1] = l->a[1];
    e->a[2] = l->a[2];
    e->a[3] = l->a[3] | linked;
    e->a[4] = l->path;
    e->a[5] = l->probe | ((u64)mask << 32);
    u32 fd_only = l->fd_only;
    sp_lite_done(l, tid);
    sp_put_call_strings(e, type, fd_only, (long)e->a[0], (const char *)e->a[4], e->a[1]);
    e->ret = ret;
    e->flags |= SP_F_RET;
    sp_emit(e);
    return 0;
}

/* The same for records with paths, which may have to be read again first. */
static __always_inline int sp_finish_path(long ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sp_lite *l = sp_lite_find(tid);
    if (l && l->type != SP_EV_EXEC)
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
    sp_put_opened(e, ret);
    e->ret = ret;
    e->flags |= SP_F_RET;
    e->ts = bpf_ktime_get_boot_ns();  /* when the result is known: records stay in time order */
    sp_emit(e);
    pending.delete(&tid);
    return 0;
}

int sp_exit_path(struct sp_exit_ctx *ctx)
{
    return sp_finish_path(ctx->ret);
}

/* Keep a call that only a failure can make interesting as a few words until sys_exit. */
static __always_inline void sp_keep_lite(struct sp_call *c, u32 mask, u32 link)
{
    struct sp_lite l = {.path = c->path, .type = c->type, .probe = c->probe, .mask = mask,
                        .fd_only = c->fd_only, .link = link};
    l.a[0] = c->dfd;
    l.a[1] = c->a1;
    l.a[2] = c->a2;
    l.a[3] = c->a3;
    if (!sp_lite_put(&l, (u32)bpf_get_current_pid_tgid()))
        sp_count_lost(c->type);
}

/* A write-open (not O_TMPFILE) whose path as given matched no prefix may still reach a watched
 * file: through a symlink (`/tmp/l/shadow` with `/tmp/l -> /etc`) or a link of /proc
 * (`/proc/self/fd/N` of a descriptor opened O_PATH). Nothing at sys_enter proves cheaply that
 * a path holds no link, so such a call waits for sys_exit as a few words (struct sp_lite, with
 * `link` set), where, if it succeeded, the file it opened is walked and the clauses tested on
 * its path instead. Only where a clause with a prefix accepts a success; reads cost nothing
 * more. */
static __always_inline int sp_prefix_accepts_success(struct sp_type_cfg *cfg)
{
    for (u32 i = 0; i < SP_MAX_CLAUSES; i++) {
        if (i >= cfg->nclauses)
            break;
        u32 f = cfg->c[i].flags;
        if ((f & SP_C_PREFIX) && !(f & (SP_C_FAILURE | SP_C_ERRNO)))
            return 1;
    }
    return 0;
}

static __always_inline int sp_may_link(struct sp_type_cfg *cfg, struct sp_call *c)
{
#ifdef SP_KPATH
    u32 probe = c->probe;
    if (!cfg || c->type != SP_EV_WRITE || (c->a1 & 020000000) || c->fd_only == 1 ||
        (probe != SP_P_OPENAT && probe != SP_P_OPENAT2 && probe != SP_P_OPEN && probe != SP_P_CREAT))
        return 0;
    return sp_prefix_accepts_success(cfg);
#else
    return 0;
#endif
}

/* A record with one path (at str offset 0). The path test runs first, on a bare record: most
 * opens are dropped before any of the header's helper calls and kernel reads. */
static __always_inline int sp_path_event(struct sp_call *c)
{
    if (sp_self())
        return 0;
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    u32 type = c->type;
    struct sp_type_cfg *cfg = sp_cfg(type);
    e->str_len = 0;
    e->nstr = 0;
    e->flags = 0;
    u32 mask = 0xff; /* unreadable now: every clause stays open, user space judges the path */
    u8 defer = 0;
    if (!sp_put_path(e, c->dfd, (const char *)c->path, c->fd_only))
        defer = SP_F_DEFER;
    if (!defer)
        mask = sp_clauses(e, cfg, 1, e->str_len, 0, 0);
    if (!mask || sp_needs_failure(cfg, mask)) {
        /* a success matters here only if the file opened is a watched one */
        u32 link = sp_may_link(cfg, c);
        if (mask || link)
            sp_keep_lite(c, mask, link);
        return 0;
    }
    u16 len = e->str_len;
    u8 n = e->nstr;
    u8 fl = e->flags | defer;
    sp_fill(e, type, c->probe);
    e->str_len = len;
    e->nstr = n;
    e->flags |= fl;
    if (!sp_pre_filter(e, cfg))
        return 0;
    if (type == SP_EV_SETXATTR)
        sp_put_str(e, (const char *)c->a1, 1);
    e->a[0] = c->dfd;
    e->a[1] = c->a1;
    e->a[2] = c->a2;
    e->a[3] = c->a3;
    e->a[4] = c->path;
    sp_stash_mask(e, mask);
    return 0;
}

/* O_WRONLY O_RDWR O_CREAT O_TRUNC O_APPEND __O_TMPFILE, as the auditd source decides */
#define SP_O_WRITE_MASK (01 | 02 | 0100 | 01000 | 02000 | 020000000)

/* open or write by the flags, or 0 when no rule wants that one */
static __always_inline u32 sp_open_type(u64 flags)
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
    return type;
}

#if defined(SP_WANT_OPEN) || defined(SP_WANT_WRITE)
/* openat has a program of its own: it is by far the most frequent, and it reads its
 * arguments straight from the context. */
TRACEPOINT_PROBE(syscalls, sys_enter_openat)
{
    u32 zero = 0;
    struct sp_call *c = calls.lookup(&zero);
    if (!c)
        return 0;
    c->type = sp_open_type(args->flags);
    if (!c->type)
        return 0;
    c->probe = SP_P_OPENAT;
    c->fd_only = 0;
    c->dfd = (int)args->dfd;
    c->path = (u64)args->filename;
    c->a1 = args->flags;
    c->a2 = args->mode;
    c->a3 = 0;
    return sp_path_event(c);
}
#endif

#if (defined(SP_WANT_OPEN) || defined(SP_WANT_WRITE) || defined(SP_WANT_UNLINK) || defined(SP_WANT_RENAME) || \
     defined(SP_WANT_SETXATTR)) && \
    defined(SP_HAVE_IO_URING) && defined(SP_OFF_IO_KIOCB_CMD) && defined(SP_OFF_FILENAME_NAME)
#define SP_IORING_OP_OPENAT 18
#define SP_IORING_OP_OPENAT2 28
#define SP_IORING_OP_RENAMEAT 35
#define SP_IORING_OP_UNLINKAT 36
#define SP_IORING_OP_MKDIRAT 37
#define SP_IORING_OP_SYMLINKAT 38
#define SP_IORING_OP_LINKAT 39
#define SP_IORING_OP_FSETXATTR 41
#define SP_IORING_OP_SETXATTR 42
#define SP_REQ_F_FIXED_FILE 1
/* Path operations submitted through io_uring enter no syscall tracepoint: a write-open of a
 * watched file, or an unlink, made that way would raise nothing. The ring's own tracepoints show
 * them: at submission the request is prepared (its command area holds the operation's struct:
 * io_open, io_unlink, io_mkdir, io_link, io_rename, io_xattr, with the paths copied into the
 * kernel as struct filename), so the record is built there, on the submitting task, as the
 * syscall's would be, and waits by request for the completion that gives its result (-errno on
 * failure). Rare: every such call whose path a clause can match is kept, whatever its outcome;
 * user_data (a[4]) tells a recycled request apart. */
BPF_HASH(uring_pending, u64, struct sp_event, SP_PENDING_MAX);

TRACEPOINT_PROBE(io_uring, io_uring_submit_req)
{
    char *cmd = (char *)args->req + SP_OFF_IO_KIOCB_CMD;
    u32 type = 0;
    u32 probe = 0;
    int dfd = 0;
    void *fname = 0;
    const char *xname = 0; /* the attribute's name (struct xattr_name: its chars first) */
    u64 a1 = 0, a2 = 0, a3 = 0;
    int fd_only = 0; /* as sp_put_path_from takes it: 1 a descriptor alone, 2 RESOLVE_IN_ROOT */
    switch (args->opcode) {
#if (defined(SP_WANT_OPEN) || defined(SP_WANT_WRITE)) && defined(SP_OFF_IO_OPEN_DFD) && \
    defined(SP_OFF_IO_OPEN_FILENAME) && defined(SP_OFF_IO_OPEN_HOW)
    case SP_IORING_OP_OPENAT:
    case SP_IORING_OP_OPENAT2: {
        u64 how[3] = {};
        bpf_probe_read_kernel(&dfd, sizeof(dfd), cmd + SP_OFF_IO_OPEN_DFD);
        bpf_probe_read_kernel(&fname, sizeof(fname), cmd + SP_OFF_IO_OPEN_FILENAME);
        bpf_probe_read_kernel(&how, sizeof(how), cmd + SP_OFF_IO_OPEN_HOW);
        type = sp_open_type(how[0]);
        probe = args->opcode == SP_IORING_OP_OPENAT ? SP_P_IO_URING_OPENAT : SP_P_IO_URING_OPENAT2;
        a1 = how[0];
        a2 = how[1];
        a3 = how[2] & SP_RESOLVE_IN_ROOT;
        fd_only = a3 ? 2 : 0;
#if defined(SP_KPATH) && defined(SP_OFF_IO_OPEN_FILE_SLOT)
        {
            /* the result is a descriptor of the submitting task unless it goes to one of the
             * ring's own slots (file_slot); O_TMPFILE names its directory, as for the syscall */
            u32 slot = 1;
            bpf_probe_read_kernel(&slot, sizeof(slot), cmd + SP_OFF_IO_OPEN_FILE_SLOT);
            if (!slot && !(how[0] & 020000000))
                a3 |= SP_URING_FD;
        }
#endif
        break;
    }
#endif
#if defined(SP_WANT_UNLINK) && defined(SP_OFF_IO_UNLINK_DFD) && defined(SP_OFF_IO_UNLINK_FLAGS) && \
    defined(SP_OFF_IO_UNLINK_FILENAME)
    case SP_IORING_OP_UNLINKAT: {
        int flags = 0;
        bpf_probe_read_kernel(&dfd, sizeof(dfd), cmd + SP_OFF_IO_UNLINK_DFD);
        bpf_probe_read_kernel(&flags, sizeof(flags), cmd + SP_OFF_IO_UNLINK_FLAGS);
        bpf_probe_read_kernel(&fname, sizeof(fname), cmd + SP_OFF_IO_UNLINK_FILENAME);
        type = SP_EV_UNLINK;
        probe = SP_P_IO_URING_UNLINKAT;
        a1 = (u32)flags;
        break;
    }
#endif
#if defined(SP_WANT_WRITE) && defined(SP_OFF_IO_MKDIR_DFD) && defined(SP_OFF_IO_MKDIR_FILENAME)
    case SP_IORING_OP_MKDIRAT: /* a write with O_CREAT, O_DIRECTORY and no mode, as mkdirat's */
        bpf_probe_read_kernel(&dfd, sizeof(dfd), cmd + SP_OFF_IO_MKDIR_DFD);
        bpf_probe_read_kernel(&fname, sizeof(fname), cmd + SP_OFF_IO_MKDIR_FILENAME);
        type = SP_EV_WRITE;
        probe = SP_P_IO_URING_MKDIRAT;
        a1 = 0100 | 0200000;
        break;
#endif
#if defined(SP_WANT_WRITE) && defined(SP_OFF_IO_LINK_NEW_DFD) && defined(SP_OFF_IO_LINK_NEWPATH)
    case SP_IORING_OP_SYMLINKAT: /* the new name: a write with O_WRONLY, O_CREAT and no mode */
    case SP_IORING_OP_LINKAT:
        bpf_probe_read_kernel(&dfd, sizeof(dfd), cmd + SP_OFF_IO_LINK_NEW_DFD);
        bpf_probe_read_kernel(&fname, sizeof(fname), cmd + SP_OFF_IO_LINK_NEWPATH);
        type = SP_EV_WRITE;
        probe = args->opcode == SP_IORING_OP_LINKAT ? SP_P_IO_URING_LINKAT : SP_P_IO_URING_SYMLINKAT;
        a1 = 01 | 0100;
        break;
#endif
#if defined(SP_WANT_SETXATTR) && defined(SP_OFF_IO_XATTR_CTX) && defined(SP_OFF_IO_XATTR_FILENAME) && \
    defined(SP_OFF_KXATTR_KNAME)
    case SP_IORING_OP_SETXATTR: /* by path */
        dfd = SP_AT_FDCWD;
        bpf_probe_read_kernel(&fname, sizeof(fname), cmd + SP_OFF_IO_XATTR_FILENAME);
        bpf_probe_read_kernel(&xname, sizeof(xname), cmd + SP_OFF_IO_XATTR_CTX + SP_OFF_KXATTR_KNAME);
        type = SP_EV_SETXATTR;
        probe = SP_P_IO_URING_SETXATTR;
        break;
#endif
#if defined(SP_WANT_SETXATTR) && defined(SP_OFF_IO_XATTR_CTX) && defined(SP_OFF_KXATTR_KNAME) && \
    defined(SP_OFF_IO_KIOCB_CQE) && defined(SP_OFF_IO_CQE_FD)
    case SP_IORING_OP_FSETXATTR:
        /* by descriptor, which the ring looks up only when it issues the request: at submission
         * the request holds the number (cqe.fd), a descriptor of the submitting task, unless it
         * is one of the ring's fixed files, which is not named here */
        if (args->flags & SP_REQ_F_FIXED_FILE)
            return 0;
        bpf_probe_read_kernel(&dfd, sizeof(dfd), (char *)args->req + SP_OFF_IO_KIOCB_CQE + SP_OFF_IO_CQE_FD);
        bpf_probe_read_kernel(&xname, sizeof(xname), cmd + SP_OFF_IO_XATTR_CTX + SP_OFF_KXATTR_KNAME);
        fd_only = 1;
        type = SP_EV_SETXATTR;
        probe = SP_P_IO_URING_FSETXATTR;
        break;
#endif
    default:
        return 0;
    }
    const char *name = 0;
    if (fname)
        bpf_probe_read_kernel(&name, sizeof(name), (char *)fname + SP_OFF_FILENAME_NAME);
    struct sp_event *e = sp_scratch();
    if (!type || (!name && fd_only != 1) || !e || sp_self())
        return 0;
    struct sp_type_cfg *cfg = sp_cfg(type);
    e->str_len = 0;
    e->nstr = 0;
    e->flags = 0;
    sp_put_path_from(e, dfd, name, fd_only, 0);
    u32 mask = sp_clauses(e, cfg, 1, e->str_len, 0, 0);
    /* a write-open whose path matched no prefix may still reach a watched file through a link:
     * kept until its completion names the file it opened (sp_uring_opened), as sp_may_link
     * keeps a syscall's */
    if (!mask && !(type == SP_EV_WRITE && (a3 & SP_URING_FD) && cfg && sp_prefix_accepts_success(cfg)))
        return 0;
    u16 len = e->str_len;
    u8 n = e->nstr;
    u8 fl = e->flags;
    sp_fill(e, type, probe);
    e->str_len = len;
    e->nstr = n;
    e->flags |= fl;
    if (!sp_pre_filter(e, cfg))
        return 0;
    if (xname)
        sp_put_str(e, xname, 0);
    e->a[0] = dfd;
    e->a[1] = a1;
    e->a[2] = a2;
    e->a[3] = a3;
    e->a[4] = args->user_data;
    e->a[5] = (e->a[5] & 0xffffffffULL) | ((u64)mask << 32);
    u64 req = (u64)args->req;
    if (uring_pending.update(&req, e) != 0)
        sp_count_lost(type);
    return 0;
}

/* A ring's open that returned a descriptor (SP_URING_FD) is named by the file it opened, as the
 * syscall's is (sp_put_opened, sp_finish_lite): the completion runs in a task that shares the
 * submitter's descriptor table. One a clause passed on its path as given gets the opened file's
 * path (or a watched inode's watched path) as its second string; one kept only for the file it
 * opened gets it if a clause holds on it, and is then named by it. 1 when the record goes up. */
static __always_inline int sp_uring_opened(struct sp_event *e, long ret, int passed)
{
#ifdef SP_KPATH
    if (!(e->a[3] & SP_URING_FD) || ret < 0)
        return passed;
    struct sp_event *o = sp_scratch();
    void *file = sp_file_of(ret);
    if (!o || !file)
        return passed;
    o->str_len = 0;
    o->nstr = 0;
    o->flags = 0;
    void *opened = (char *)file + SP_OFF_FILE_F_PATH;
    struct sp_inode_path *ip = e->type == SP_EV_WRITE ? sp_watched_inode(file) : 0;
    struct sp_walk w = {};
    int named;
    if (ip)
        named = sp_put_watched(o, ip);
    else if (passed)
        named = sp_put_kpath(o, opened, 0, 0);
    else
        named = sp_link_head_ok(opened, &w) && sp_put_kpath(o, opened, 0, w.fs_view ? w.fs_root : 0);
    if (!named)
        return passed;
    u32 mask = 0;
    if (!passed && (!(mask = sp_clauses(o, sp_cfg(e->type), 1, o->str_len, 0, 0)) ||
                    !sp_outcome_mask_ok(e->type, mask, ret)))
        return 0;
    u32 off = e->str_len;
    u32 n = o->str_len;
    if (off >= SP_STR_MAX || !n || n >= SP_PATH_HALF)
        return passed;
    sp_barrier_var(off);
    off &= SP_STR_MAX - 1;
    sp_barrier_var(n);
    n &= SP_PATH_HALF - 1;
    if (bpf_probe_read_kernel(&e->str[off], n, o->str) != 0)
        return passed;
    e->str_len = off + n;
    e->nstr += 1;
    e->a[3] |= SP_OPENED_PATH;
    if (ip || !passed)
        e->a[3] |= SP_NAMED_OPENED;
    if (!passed)
        e->a[5] = (e->a[5] & 0xffffffffULL) | ((u64)mask << 32);
    return 1;
#else
    return passed;
#endif
}

TRACEPOINT_PROBE(io_uring, io_uring_complete)
{
    u64 req = (u64)args->req;
    struct sp_event *e = uring_pending.lookup(&req);
    if (!e)
        return 0;
    long ret = args->res;
    if (e->a[4] == args->user_data && sp_uring_opened(e, ret, sp_outcome_ok(e, ret))) {
        e->a[3] &= ~(u64)SP_URING_FD;
        e->ret = ret;
        e->flags |= SP_F_RET;
        e->ts = bpf_ktime_get_boot_ns();
        sp_emit(e);
    }
    uring_pending.delete(&req);
    return 0;
}

#if defined(SP_WANT_RENAME) && defined(SP_OFF_IO_RENAME_OLD_DFD) && defined(SP_OFF_IO_RENAME_NEW_DFD) && \
    defined(SP_OFF_IO_RENAME_OLDPATH) && defined(SP_OFF_IO_RENAME_NEWPATH) && defined(SP_OFF_IO_RENAME_FLAGS) && \
    defined(SP_URING_SUBMIT_LAYOUT)
/* io_uring_submit_req's record up to the fields read here, as its format file gives them on the
 * kernels SP_URING_SUBMIT_LAYOUT is defined for (user space compares the offsets). bcc generates
 * the tracepoint's own struct for TRACEPOINT_PROBE above only, once. */
struct sp_uring_submit {
    u64 common;
    void *ctx;
    void *req;
    u64 user_data;
    u8 opcode;
};

/* IORING_OP_RENAMEAT (struct io_rename): a rename record with its two paths, as renameat2's. A
 * program of its own on io_uring_submit_req (attached beside the one above): two path walks in
 * one program pass the verifier's budget. */
int sp_uring_rename(struct sp_uring_submit *args)
{
    if (args->opcode != SP_IORING_OP_RENAMEAT)
        return 0;
    char *cmd = (char *)args->req + SP_OFF_IO_KIOCB_CMD;
    int olddfd = 0, newdfd = 0, flags = 0;
    void *oldf = 0, *newf = 0;
    const char *oldp = 0, *newp = 0;
    bpf_probe_read_kernel(&olddfd, sizeof(olddfd), cmd + SP_OFF_IO_RENAME_OLD_DFD);
    bpf_probe_read_kernel(&newdfd, sizeof(newdfd), cmd + SP_OFF_IO_RENAME_NEW_DFD);
    bpf_probe_read_kernel(&oldf, sizeof(oldf), cmd + SP_OFF_IO_RENAME_OLDPATH);
    bpf_probe_read_kernel(&newf, sizeof(newf), cmd + SP_OFF_IO_RENAME_NEWPATH);
    bpf_probe_read_kernel(&flags, sizeof(flags), cmd + SP_OFF_IO_RENAME_FLAGS);
    if (oldf)
        bpf_probe_read_kernel(&oldp, sizeof(oldp), (char *)oldf + SP_OFF_FILENAME_NAME);
    if (newf)
        bpf_probe_read_kernel(&newp, sizeof(newp), (char *)newf + SP_OFF_FILENAME_NAME);
    if (!oldp || !newp)
        return 0;
    struct sp_event *e = sp_begin(SP_EV_RENAME, SP_P_IO_URING_RENAMEAT);
    if (!e)
        return 0;
    u32 first = 0;
    /* one loop, so that the path walk is inlined once (as sp_put_two_paths) */
#pragma clang loop unroll(disable)
    for (int j = 0; j < 2; j++) {
        if (j == 1)
            first = e->str_len;
        sp_put_path_from(e, j ? newdfd : olddfd, j ? newp : oldp, 0, 0);
    }
    u32 mask = sp_clauses(e, sp_cfg(SP_EV_RENAME), 2, first, first, e->str_len - first);
    if (!mask)
        return 0;
    e->a[0] = olddfd;
    e->a[1] = newdfd;
    e->a[2] = (u32)flags;
    e->a[4] = args->user_data;
    e->a[5] = (e->a[5] & 0xffffffffULL) | ((u64)mask << 32);
    u64 req = (u64)args->req;
    if (uring_pending.update(&req, e) != 0)
        sp_count_lost(SP_EV_RENAME);
    return 0;
}
#endif
#endif

/* Every other path syscall, told apart by its number. */
int sp_enter_path(struct sp_enter_ctx *ctx)
{
    u32 zero = 0;
    struct sp_call *cp = calls.lookup(&zero);
    if (!cp)
        return 0;
    u64 a[6] = {};
    bpf_probe_read_kernel(&a, sizeof(a), &ctx->args[0]);
    struct sp_call c = {.dfd = SP_AT_FDCWD, .path = a[0]};
    switch (ctx->nr) {
#if defined(SP_WANT_OPEN) || defined(SP_WANT_WRITE)
    case __NR_openat2: {
        u64 how[3] = {};
        bpf_probe_read_user(&how, sizeof(how), (void *)a[2]);
        c.type = sp_open_type(how[0]);
        c.probe = SP_P_OPENAT2;
        c.fd_only = how[2] & SP_RESOLVE_IN_ROOT ? 2 : 0;
        c.dfd = (int)a[0];
        c.path = a[1];
        c.a1 = how[0];
        c.a2 = how[1];
        c.a3 = how[2] & SP_RESOLVE_IN_ROOT;
        break;
    }
#ifdef __NR_open
    case __NR_open:
        c.type = sp_open_type(a[1]);
        c.probe = SP_P_OPEN;
        c.a1 = a[1];
        c.a2 = a[2];
        break;
#endif
#ifdef __NR_creat
    case __NR_creat:
        c.type = sp_open_type(01 | 0100 | 01000);
        c.probe = SP_P_CREAT;
        c.a1 = 01 | 0100 | 01000;
        c.a2 = a[1];
        break;
#endif
#endif
#ifdef SP_WANT_WRITE
    /* What the auditd reader makes a `write` of too (and an audit watch's `-p w` records):
     * truncate(2) as an open O_WRONLY|O_TRUNC, mkdir and mknod as O_CREAT|O_DIRECTORY. */
#ifdef __NR_truncate
    case __NR_truncate:
        c.type = SP_EV_WRITE;
        c.probe = SP_P_TRUNCATE;
        c.a1 = 01 | 01000;
        break;
#endif
#ifdef __NR_mkdir
    case __NR_mkdir:
#endif
#ifdef __NR_mknod
    case __NR_mknod:
#endif
    case __NR_mkdirat:
    case __NR_mknodat: {
        int at = ctx->nr == __NR_mkdirat || ctx->nr == __NR_mknodat;
        c.type = SP_EV_WRITE;
        c.probe = ctx->nr == __NR_mkdirat ? SP_P_MKDIRAT : ctx->nr == __NR_mknodat ? SP_P_MKNODAT : SP_P_MKNOD;
#ifdef __NR_mkdir
        if (ctx->nr == __NR_mkdir)
            c.probe = SP_P_MKDIR;
#endif
        c.dfd = at ? (int)a[0] : SP_AT_FDCWD;
        c.path = at ? a[1] : a[0];
        c.a1 = 0100 | 0200000;
        break;
    }
    /* link and symlink make a new name (a hard link into /usr/bin, a symlink into /etc/cron.d):
     * a write with O_WRONLY|O_CREAT and no mode naming it, as the auditd reader makes them. */
#ifdef __NR_link
    case __NR_link:
#endif
#ifdef __NR_symlink
    case __NR_symlink:
#endif
    case __NR_linkat:
    case __NR_symlinkat:
        c.type = SP_EV_WRITE;
        c.a1 = 01 | 0100;
        if (ctx->nr == __NR_linkat) { /* linkat(olddfd, old, newdfd, new, flags) */
            c.probe = SP_P_LINKAT;
            c.dfd = (int)a[2];
            c.path = a[3];
        } else if (ctx->nr == __NR_symlinkat) { /* symlinkat(target, newdfd, new) */
            c.probe = SP_P_SYMLINKAT;
            c.dfd = (int)a[1];
            c.path = a[2];
        } else { /* link(old, new), symlink(target, new) */
            c.probe = SP_P_LINK;
#ifdef __NR_symlink
            if (ctx->nr == __NR_symlink)
                c.probe = SP_P_SYMLINK;
#endif
            c.path = a[1];
        }
        break;
#endif
#ifdef SP_WANT_UNLINK
    case __NR_unlinkat:
        c.type = SP_EV_UNLINK;
        c.probe = SP_P_UNLINKAT;
        c.dfd = (int)a[0];
        c.path = a[1];
        c.a1 = a[2];
        break;
#ifdef __NR_unlink
    case __NR_unlink:
        c.type = SP_EV_UNLINK;
        c.probe = SP_P_UNLINK;
        break;
#endif
#ifdef __NR_rmdir
    case __NR_rmdir:
        c.type = SP_EV_UNLINK;
        c.probe = SP_P_RMDIR;
        c.a1 = 0x200;
        break;
#endif
#endif
#ifdef SP_WANT_CHMOD
    case __NR_fchmodat:
    case __NR_fchmodat2:
        c.type = SP_EV_CHMOD;
        c.probe = ctx->nr == __NR_fchmodat ? SP_P_FCHMODAT : SP_P_FCHMODAT2;
        c.dfd = (int)a[0];
        c.path = a[1];
        c.a1 = a[2];
        c.a2 = ctx->nr == __NR_fchmodat ? 0 : a[3];
        break;
#ifdef __NR_chmod
    case __NR_chmod:
        c.type = SP_EV_CHMOD;
        c.probe = SP_P_CHMOD;
        c.a1 = a[1];
        break;
#endif
    case __NR_fchmod:
        c.type = SP_EV_CHMOD;
        c.probe = SP_P_FCHMOD;
        c.fd_only = 1;
        c.dfd = (int)a[0];
        c.path = 0;
        c.a1 = a[1];
        break;
#endif
#ifdef SP_WANT_CHOWN
    case __NR_fchownat:
        c.type = SP_EV_CHOWN;
        c.probe = SP_P_FCHOWNAT;
        c.dfd = (int)a[0];
        c.path = a[1];
        c.a1 = a[2];
        c.a2 = a[3];
        c.a3 = a[4];
        break;
#ifdef __NR_chown
    case __NR_chown:
    case __NR_lchown:
        c.type = SP_EV_CHOWN;
        c.probe = ctx->nr == __NR_chown ? SP_P_CHOWN : SP_P_LCHOWN;
        c.a1 = a[1];
        c.a2 = a[2];
        c.a3 = ctx->nr == __NR_chown ? 0 : 0x100;
        break;
#endif
    case __NR_fchown:
        c.type = SP_EV_CHOWN;
        c.probe = SP_P_FCHOWN;
        c.fd_only = 1;
        c.dfd = (int)a[0];
        c.path = 0;
        c.a1 = a[1];
        c.a2 = a[2];
        break;
#endif
#ifdef SP_WANT_SETXATTR
    case __NR_setxattr:
    case __NR_lsetxattr:
    case __NR_removexattr:
    case __NR_lremovexattr:
        c.type = SP_EV_SETXATTR;
        c.probe = ctx->nr == __NR_setxattr ? SP_P_SETXATTR :
                  ctx->nr == __NR_lsetxattr ? SP_P_LSETXATTR :
                  ctx->nr == __NR_removexattr ? SP_P_REMOVEXATTR : SP_P_LREMOVEXATTR;
        c.a1 = a[1];
        break;
    case __NR_fsetxattr:
    case __NR_fremovexattr:
        c.type = SP_EV_SETXATTR;
        c.probe = ctx->nr == __NR_fsetxattr ? SP_P_FSETXATTR : SP_P_FREMOVEXATTR;
        c.fd_only = 1;
        c.dfd = (int)a[0];
        c.path = 0;
        c.a1 = a[1];
        break;
    case __NR_setxattrat:
    case __NR_removexattrat:
        c.type = SP_EV_SETXATTR;
        c.probe = ctx->nr == __NR_setxattrat ? SP_P_SETXATTRAT : SP_P_REMOVEXATTRAT;
        c.dfd = (int)a[0];
        c.path = a[1];
        c.a1 = a[3];
        break;
#endif
    default:
        return 0;
    }
    if (!c.type)
        return 0;
    *cp = c;
    return sp_path_event(cp);
}
#endif

#ifdef SP_WANT_RENAME
/* renameat2, renameat, rename: two paths, either of which may be the watched one. */
int sp_enter_rename(struct sp_enter_ctx *ctx)
{
    u64 a[5] = {};
    bpf_probe_read_kernel(&a, sizeof(a), &ctx->args[0]);
    long olddfd = SP_AT_FDCWD, newdfd = SP_AT_FDCWD;
    const char *oldp = (const char *)a[0], *newp = (const char *)a[1];
    u32 probe = SP_P_RENAME;
    u64 flags = 0;
    if (ctx->nr != __NR_renameat2 && ctx->nr != __NR_renameat) {
#ifdef __NR_rename
        if (ctx->nr != __NR_rename)
            return 0;
#else
        return 0;
#endif
    } else {
        olddfd = (int)a[0];
        oldp = (const char *)a[1];
        newdfd = (int)a[2];
        newp = (const char *)a[3];
        probe = ctx->nr == __NR_renameat2 ? SP_P_RENAMEAT2 : SP_P_RENAMEAT;
        flags = ctx->nr == __NR_renameat2 ? a[4] : 0;
    }
    struct sp_event *e = sp_begin(SP_EV_RENAME, probe);
    if (!e)
        return 0;
    e->a[0] = olddfd;
    e->a[1] = newdfd;
    e->a[2] = flags;
    e->a[3] = (u64)newp;
    e->a[4] = (u64)oldp;
    u32 first = 0;
    int ok = sp_put_two_paths(e, &first);
    if (!ok) {
        e->flags |= SP_F_DEFER;
        sp_stash(e);
        return 0;
    }
    sp_stash_mask(e, sp_clauses(e, sp_cfg(SP_EV_RENAME), 2, first, first, e->str_len - first));
    return 0;
}
#endif

/* ---- process lifecycle (always on: they keep the process context current) ---- */

/* execve and execveat: their arguments wait as a few words (struct sp_lite); a successful
 * exec is reported from sched_process_exec with what the kernel then has, a failed one from
 * sys_exit with the path and argv as given. */
int sp_enter_exec(struct sp_enter_ctx *ctx)
{
    if (sp_self())
        return 0;
    u64 a[5] = {};
    bpf_probe_read_kernel(&a, sizeof(a), &ctx->args[0]);
    int at = ctx->nr == __NR_execveat;
    struct sp_lite lv = {};
    struct sp_lite *l = &lv;
    l->type = SP_EV_EXEC;
    l->probe = at ? SP_P_EXECVEAT : SP_P_EXECVE;
    l->mask = 0xff;
    l->path = at ? a[1] : a[0];
    l->a[0] = at ? (long)(int)a[0] : SP_AT_FDCWD;
    l->a[1] = at ? a[4] : 0;
    l->a[2] = at ? a[2] : a[1];
    if (!sp_lite_put(l, (u32)bpf_get_current_pid_tgid()))
        sp_count_lost(SP_EV_EXEC);
    return 0;
}

static __always_inline struct sp_lite *sp_exec_lite(u32 tid)
{
    struct sp_lite *l = sp_lite_find(tid);
    return l && l->type == SP_EV_EXEC ? l : 0;
}

/* A failed exec: the path as given (made absolute) and argv, read now (the old program is
 * still there). A successful one was reported by sched_process_exec. */
int sp_exit_exec(struct sp_exit_ctx *ctx)
{
    long ret = ctx->ret;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sp_lite *l = sp_exec_lite(tid);
    if (!l)
        return 0;
    if (ret >= 0) {
        sp_lite_done(l, tid);
        return 0;
    }
    struct sp_event *e = sp_scratch();
    if (!e) {
        sp_lite_done(l, tid);
        return 0;
    }
    sp_fill(e, SP_EV_EXEC, l->probe);
    long dfd = (long)l->a[0];
    const char *filename = (const char *)l->path;
    const char *const *argv = (const char *const *)l->a[2];
    e->a[0] = dfd;
    e->a[1] = l->a[1];
    sp_lite_done(l, tid);
    sp_put_path(e, dfd, filename, 0);
    e->a[4] = 1; /* strings before argv: the path as given */
#pragma clang loop unroll(disable)
    for (int i = 0; i < SP_MAX_ARGS; i++) {
        const char *arg = 0;
        if (bpf_probe_read_user(&arg, sizeof(arg), &argv[i]) != 0 || !arg)
            break;
        if (e->str_len >= SP_STR_MAX) {
            e->flags |= SP_F_TRUNCATED;
            break;
        }
        sp_put_str(e, arg, 1);
    }
    e->ret = ret;
    e->flags |= SP_F_RET;
    sp_emit(e);
    return 0;
}

/* argv as the kernel copied it onto the new program's stack (mm->arg_start .. arg_end,
 * NUL-separated): one read, at most SP_STR_MAX - 1 bytes. */
static __always_inline void sp_put_argv(struct sp_event *e)
{
#if defined(SP_OFF_TASK_MM) && defined(SP_OFF_MM_ARG_START) && defined(SP_OFF_MM_ARG_END)
    void *mm = 0;
    bpf_probe_read_kernel(&mm, sizeof(mm), (char *)sp_task() + SP_OFF_TASK_MM);
    if (!mm)
        return;
    u64 se[2] = {};
    bpf_probe_read_kernel(&se[0], 8, (char *)mm + SP_OFF_MM_ARG_START);
    bpf_probe_read_kernel(&se[1], 8, (char *)mm + SP_OFF_MM_ARG_END);
    u32 off = e->str_len;
    if (se[1] <= se[0] || off >= SP_STR_MAX)
        return;
    u64 want = se[1] - se[0];
    u32 n = want < SP_STR_MAX - 1 ? want : SP_STR_MAX - 1;
    if (want > n)
        e->flags |= SP_F_TRUNCATED;
    sp_barrier_var(n);
    n &= SP_STR_MAX - 1;
    sp_barrier_var(off);
    off &= SP_STR_MAX - 1;
    if (!n || bpf_probe_read_user(&e->str[off], n, (void *)se[0]) != 0)
        return;
    e->str_len = off + n; /* the last argument's NUL is the record's */
    e->nstr += 1;
#endif
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
    if (sp_self())
        return 0;
    u32 old = args->old_pid;
    struct sp_lite *l = sp_exec_lite(old);
    u32 probe = l ? l->probe : SP_P_SCHED_EXEC;
    if (l)
        sp_lite_done(l, old);
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    /* The header as it is after the exec (a set-uid program has its new euid here), the
     * executable as the kernel has it (mm->exe_file: symlinks resolved, a script's
     * interpreter, as auditd names it) and the working directory, then argv. Without BTF
     * offsets, or an executable deeper than the walk goes, the path as the kernel copied it
     * (data_loc) instead of both. A working directory deeper than the walk goes is sent empty
     * (user space reads it from /proc): it must not cost the executable its name. */
    sp_fill(e, SP_EV_EXEC, probe);
    e->a[0] = SP_AT_FDCWD;
    e->a[4] = 1;
#ifdef SP_KPATH
    int ok = 0;
#pragma clang loop unroll(disable)
    for (int j = 0; j < 2; j++) {
        if (sp_put_kpath(e, j ? sp_path_of(SP_AT_FDCWD) : sp_exe_path(), !j, 0))
            ok = 1;
        else if (j)
            sp_put_str(e, 0, 0);
        else
            break;
    }
    if (ok) {
        e->flags |= SP_F_KPATH;
        e->a[4] = 2; /* strings before argv: the executable and the cwd as the kernel has them */
    } else {
        e->str_len = 0;
        e->nstr = 0;
        sp_put_str(e, (char *)args + (args->data_loc_filename & 0xFFFF), 0);
    }
#else
    sp_put_str(e, (char *)args + (args->data_loc_filename & 0xFFFF), 0);
#endif
    sp_put_argv(e);
    e->flags |= SP_F_RET;
    sp_emit(e);
    return 0;
}

/* A thread gone in the middle of a syscall leaves nothing waiting behind. (No record: user
 * space tells a reused pid apart by the start time every record carries.) */
TRACEPOINT_PROBE(sched, sched_process_exit)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    /* a lookup is lock-free and nearly every thread leaves nothing: delete only then */
    if (pending.lookup(&tid))
        pending.delete(&tid);
    if (pending_lite.lookup(&tid))
        pending_lite.delete(&tid);
#ifdef SP_WANT_AUTH
    if (pam_calls.lookup(&tid))
        pam_calls.delete(&tid);
#endif
    return 0;
}

/* chdir, fchdir: after a successful call, the new working directory as the kernel has it
 * (without BTF offsets, user space re-reads /proc/PID/cwd when it next needs it). */
int sp_exit_chdir(struct sp_exit_ctx *ctx)
{
    if (ctx->ret != 0 || sp_self())
        return 0;
    struct sp_event *e = sp_scratch();
    if (!e)
        return 0;
    sp_fill(e, SP_EV_CHDIR, ctx->nr == __NR_chdir ? SP_P_CHDIR : SP_P_FCHDIR);
#ifdef SP_KPATH
    if (sp_put_kpath(e, sp_path_of(SP_AT_FDCWD), 0, 0))
        e->flags |= SP_F_KPATH;
#endif
    e->flags |= SP_F_RET;
    sp_emit(e);
    return 0;
}

/* ---- network ---- */

#if defined(SP_WANT_CONNECT) || defined(SP_WANT_ACCEPT) || defined(SP_WANT_ACCOUNT_CHANGE) || \
    defined(SP_WANT_CONFIG_CHANGE)
/* struct socket * behind descriptor fd of the current task, or 0. */
static __always_inline void *sp_socket_of(long fd)
{
#ifdef SP_KPATH
    void *file = sp_file_of(fd);
    if (!file)
        return 0;
    return sp_read_ptr(file, SP_OFF_FILE_PRIVATE_DATA);
#else
    return 0;
#endif
}
#endif

#if defined(SP_WANT_CONNECT) || defined(SP_WANT_ACCEPT)
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
        /* sun_path: a file (relative to the working directory, as the kernel looks it up), or
         * an abstract name after a NUL (a[2] = 1) */
        char first = 0;
        bpf_probe_read_user(&first, 1, (char *)args->uservaddr + 2);
        if (first) {
            sp_put_path(e, SP_AT_FDCWD, (char *)args->uservaddr + 2, 0);
        } else {
            /* not NUL-terminated: as many bytes as the address length says */
            e->a[2] = 1;
            u32 n = args->addrlen > 3 ? args->addrlen - 3 : 0;
            if (n > 107)
                n = 107;
            sp_barrier_var(n);
            n &= 127;
            if (n && bpf_probe_read_user(&e->str[0], n, (char *)args->uservaddr + 3) != 0)
                n = 0;
            e->str[n & 127] = 0;
            e->str_len = n + 1;
            e->nstr = 1;
        }
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
/* accept4 and accept */
int sp_enter_accept(struct sp_enter_ctx *ctx)
{
    struct sp_event *e = sp_begin(SP_EV_ACCEPT, ctx->nr == __NR_accept4 ? SP_P_ACCEPT4 : SP_P_ACCEPT);
    if (!e)
        return 0;
    sp_stash(e);
    return 0;
}

int sp_exit_accept(struct sp_exit_ctx *ctx)
{
    long ret = ctx->ret;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct sp_event *e = pending.lookup(&tid);
    if (!e)
        return 0;
    if (ret >= 0)
        sp_sock_details(e, ret, 1);
    return sp_finish(ret);
}
#endif

/* ---- audit messages: what user space tells the audit system over NETLINK_AUDIT ----
 * shadow-utils (useradd, usermod, userdel, passwd, groupadd ...) report each account change
 * through libaudit, and auditctl sends its rule changes the same way: one sendto(2) to a
 * NETLINK_AUDIT socket each. auditd logs exactly these (as the kernel relays them), so
 * reading them here gives the same account and configuration events. */

#if defined(SP_WANT_ACCOUNT_CHANGE) || defined(SP_WANT_CONFIG_CHANGE)
/* Per audit message type (from SP_AUDIT_FIRST): 1 account change, 2 configuration change. */
BPF_ARRAY(audit_kind, u8, SP_AUDIT_TYPES);

TRACEPOINT_PROBE(syscalls, sys_enter_sendto)
{
    /* libaudit addresses the kernel explicitly: a sockaddr_nl (family AF_NETLINK) */
    if (!args->addr || args->addr_len < 12)
        return 0;
    u16 family = 0;
    bpf_probe_read_user(&family, 2, args->addr);
    if (family != 16)
        return 0;
    u16 proto = 0;
#if defined(SP_OFF_SOCKET_SK) && defined(SP_OFF_SK_PROTOCOL)
    void *sock = sp_socket_of(args->fd);
    if (!sock)
        return 0;
    void *sk = sp_read_ptr(sock, SP_OFF_SOCKET_SK);
    if (!sk)
        return 0;
    bpf_probe_read_kernel(&proto, 2, (char *)sk + SP_OFF_SK_PROTOCOL);
#endif
    if (proto != 9) /* NETLINK_AUDIT */
        return 0;
    u32 nlh[4] = {};
    if (bpf_probe_read_user(&nlh, sizeof(nlh), args->buff) != 0)
        return 0;
    u32 mtype = nlh[1] & 0xffff;
    if (mtype < SP_AUDIT_FIRST || mtype >= SP_AUDIT_FIRST + SP_AUDIT_TYPES)
        return 0;
    u32 idx = mtype - SP_AUDIT_FIRST;
    u8 *kind = audit_kind.lookup(&idx);
    if (!kind || !*kind)
        return 0;
    struct sp_event *e = sp_begin(*kind == 1 ? SP_EV_ACCOUNT_CHANGE : SP_EV_CONFIG_CHANGE, SP_P_SENDTO);
    if (!e)
        return 0;
    u64 sent_len = args->len;
    u32 n = nlh[0] < sent_len ? nlh[0] : sent_len;
    n = n > 16 ? n - 16 : 0;
    if (n > SP_STR_MAX - 1) {
        n = SP_STR_MAX - 1;
        e->flags |= SP_F_TRUNCATED;
    }
    sp_barrier_var(n);
    n &= SP_STR_MAX - 1;
    /* The payload as it is (text for user messages, struct audit_rule_data for rules) */
    if (n && bpf_probe_read_user(&e->str[0], n, (char *)args->buff + 16) != 0)
        n = 0;
    e->str[n & (SP_STR_MAX - 1)] = 0;
    e->str_len = n + 1;
    e->nstr = 1;
    e->a[0] = mtype;
    e->a[1] = nlh[0];
    u32 mask = sp_clauses(e, sp_cfg(e->type), 0, 0, 0, 0);
    if (mask)
        sp_emit(e);
    return 0;
}
#endif

/* ---- credentials ---- */

#ifdef SP_WANT_SETUID
/* setuid, setreuid, setresuid, setgid, setregid, setresgid */
int sp_enter_setid(struct sp_enter_ctx *ctx)
{
    u32 probe;
    switch (ctx->nr) {
    case __NR_setuid: probe = SP_P_SETUID; break;
    case __NR_setreuid: probe = SP_P_SETREUID; break;
    case __NR_setresuid: probe = SP_P_SETRESUID; break;
    case __NR_setgid: probe = SP_P_SETGID; break;
    case __NR_setregid: probe = SP_P_SETREGID; break;
    case __NR_setresgid: probe = SP_P_SETRESGID; break;
    default: return 0;
    }
    struct sp_event *e = sp_begin(SP_EV_SETUID, probe);
    if (!e)
        return 0;
    u64 a[3] = {};
    bpf_probe_read_kernel(&a, sizeof(a), &ctx->args[0]);
    e->a[0] = a[0];
    e->a[1] = probe == SP_P_SETUID || probe == SP_P_SETGID ? 0 : a[1];
    e->a[2] = probe == SP_P_SETRESUID || probe == SP_P_SETRESGID ? a[2] : 0;
    sp_stash(e);
    return 0;
}

/* The header keeps the credentials before the call; a[3] = uid | euid << 32 and
 * a[4] = gid | egid << 32 are the ones after it. */
int sp_exit_setid(struct sp_exit_ctx *ctx)
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
    return sp_finish(ctx->ret);
}
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
    sp_put_path(e, args->fd, 0, 1);
    sp_put_str(e, args->uargs, 1);
    sp_stash(e);
    return 0;
}
#endif
#if defined(SP_WANT_MODULE_LOAD) && defined(SP_HAVE_INIT_MODULE)
TRACEPOINT_PROBE(syscalls, sys_enter_init_module)
{
    struct sp_event *e = sp_begin(SP_EV_MODULE_LOAD, SP_P_INIT_MODULE);
    if (!e)
        return 0;
    e->a[0] = args->len;
    sp_put_str(e, 0, 0);
    sp_put_str(e, args->uargs, 1);
    sp_stash(e);
    return 0;
}
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
#endif

#ifdef SP_WANT_MOUNT
TRACEPOINT_PROBE(syscalls, sys_enter_mount)
{
    struct sp_event *e = sp_begin(SP_EV_MOUNT, SP_P_MOUNT);
    if (!e)
        return 0;
    e->a[0] = SP_AT_FDCWD;
    e->a[1] = args->flags;
    sp_put_path(e, SP_AT_FDCWD, args->dir_name, 0);
    sp_put_str(e, args->dev_name, 1);
    sp_put_str(e, args->type, 1);
    sp_stash(e);
    return 0;
}
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
