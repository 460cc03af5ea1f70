/* secpolicy.h: the record shared by the BPF programs (secpolicy.bpf.c) and user space
 * (secpolicy/events/live/record.py reads the SP_* defines from this file, so keep them one per line). */
#ifndef SECPOLICY_H
#define SECPOLICY_H

/* Event types: index of the per-type counters and filters. */
#define SP_EV_EXEC 1
#define SP_EV_OPEN 2
#define SP_EV_WRITE 3
#define SP_EV_UNLINK 4
#define SP_EV_RENAME 5
#define SP_EV_CHMOD 6
#define SP_EV_CHOWN 7
#define SP_EV_CONNECT 8
#define SP_EV_ACCEPT 9
#define SP_EV_AUTH 10
#define SP_EV_SETUID 11
#define SP_EV_CAPSET 12
#define SP_EV_BPF 13
#define SP_EV_MODULE_LOAD 14
#define SP_EV_PTRACE 15
#define SP_EV_MOUNT 16
/* Internal record that keeps user space's process view current; never an alert. (Exits are
 * not sent: every record carries its task's start time, which tells a reused pid apart.) */
#define SP_EV_CHDIR 17
/* Extended attributes set or removed (the setxattr and removexattr families). */
#define SP_EV_SETXATTR 18
/* Audit messages sent to the kernel over NETLINK_AUDIT (libaudit): account tools, auditctl. */
#define SP_EV_ACCOUNT_CHANGE 19
#define SP_EV_CONFIG_CHANGE 20
#define SP_EV_MAX 21

/* Probe ids: which syscall or function produced the record (source.probe). */
#define SP_P_SCHED_EXEC 1
#define SP_P_EXECVE 2
#define SP_P_EXECVEAT 3
#define SP_P_OPENAT 4
#define SP_P_OPENAT2 5
#define SP_P_OPEN 6
#define SP_P_CREAT 7
#define SP_P_UNLINKAT 8
#define SP_P_UNLINK 9
#define SP_P_RMDIR 10
#define SP_P_RENAMEAT2 11
#define SP_P_RENAMEAT 12
#define SP_P_RENAME 13
#define SP_P_FCHMODAT 14
#define SP_P_FCHMODAT2 15
#define SP_P_CHMOD 16
#define SP_P_FCHMOD 17
#define SP_P_FCHOWNAT 18
#define SP_P_CHOWN 19
#define SP_P_LCHOWN 20
#define SP_P_FCHOWN 21
#define SP_P_CONNECT 22
#define SP_P_ACCEPT4 23
#define SP_P_ACCEPT 24
#define SP_P_SETUID 25
#define SP_P_SETREUID 26
#define SP_P_SETRESUID 27
#define SP_P_SETGID 28
#define SP_P_SETREGID 29
#define SP_P_SETRESGID 30
#define SP_P_CAPSET 31
#define SP_P_BPF 32
#define SP_P_INIT_MODULE 33
#define SP_P_FINIT_MODULE 34
#define SP_P_PTRACE 35
#define SP_P_MOUNT 36
#define SP_P_PAM_AUTHENTICATE 37
#define SP_P_PAM_ACCT_MGMT 38
#define SP_P_CHDIR 40
#define SP_P_FCHDIR 41
#define SP_P_SETXATTR 42
#define SP_P_LSETXATTR 43
#define SP_P_FSETXATTR 44
#define SP_P_REMOVEXATTR 45
#define SP_P_LREMOVEXATTR 46
#define SP_P_FREMOVEXATTR 47
#define SP_P_SETXATTRAT 48
#define SP_P_REMOVEXATTRAT 49
#define SP_P_SENDTO 50
#define SP_P_TRUNCATE 51
#define SP_P_MKDIR 52
#define SP_P_MKDIRAT 53
#define SP_P_MKNOD 54
#define SP_P_MKNODAT 55
#define SP_P_LINK 56
#define SP_P_LINKAT 57
#define SP_P_SYMLINK 58
#define SP_P_SYMLINKAT 59
/* Path operations submitted through io_uring (IORING_OP_OPENAT, ...). */
#define SP_P_IO_URING_OPENAT 60
#define SP_P_IO_URING_OPENAT2 61
#define SP_P_IO_URING_UNLINKAT 62
#define SP_P_IO_URING_MKDIRAT 63
#define SP_P_IO_URING_SYMLINKAT 64
#define SP_P_IO_URING_LINKAT 65
#define SP_P_IO_URING_RENAMEAT 66
#define SP_P_IO_URING_SETXATTR 67
#define SP_P_IO_URING_FSETXATTR 68

/* Record flags. */
#define SP_F_TRUNCATED 1
#define SP_F_RET 2
#define SP_F_CREDS 4
#define SP_F_PPID 8
#define SP_F_AUDIT 16
/* A descriptor's path the kernel could not resolve (no BTF offsets): a[0] is the descriptor. */
#define SP_F_FD_PATH 32
/* The path could not be read at sys_enter (page not resident): read again at sys_exit. */
#define SP_F_DEFER 64
/* Paths were resolved in the kernel (descriptors, directory descriptors, the cwd, the exe). */
#define SP_F_KPATH 128

/* Per-type filter flags (struct sp_type_cfg.flags). */
#define SP_FILTER_UID 1
#define SP_FILTER_COMM 2
#define SP_FILTER_CLAUSES 4
#define SP_FILTER_DROP 8

/* Clause flags: a record passes when one clause of its type holds (one clause per rule). */
#define SP_C_PREFIX 1
#define SP_C_FAILURE 2
#define SP_C_SUCCESS 4
#define SP_C_ERRNO 8
#define SP_MAX_CLAUSES 8

/* Sizes. SP_STR_MAX is a power of two: offsets into the string area are masked with it. */
#define SP_STR_MAX 2048
#define SP_PIECE_MAX 512
/* Size of the string area: a power of two above SP_STR_MAX + SP_PIECE_MAX, so that one mask
 * bounds any length for the verifier without ever changing it. */
#define SP_STR_BUF 4096
#define SP_MAX_ARGS 32
#define SP_MAX_PREFIXES 32
#define SP_PREFIX_WORDS 16
#define SP_HDR_SIZE 144
/* Paths resolved in the kernel: assembled backwards in half of a per-CPU buffer, so at most
 * SP_PATH_HALF - 2 bytes; at most SP_PATH_DEPTH components (and mount crossings). */
#define SP_PATH_HALF 2048
#define SP_PATH_DEPTH 32
/* Audit message types (1000..2999) the netlink probe keeps: kind 1 account, 2 configuration. */
#define SP_AUDIT_FIRST 1000
#define SP_AUDIT_TYPES 2000
/* openat2's how.resolve: absolute paths are taken beneath the directory descriptor. */
#define SP_RESOLVE_IN_ROOT 16
/* a[3] of a successful open record whose second string is the opened file's own path. */
#define SP_OPENED_PATH 4294967296
/* a[3] of a successful write-open whose path as given matched no prefix, tested at sys_exit on
 * the file it opened (a symlink or a /proc/self/fd link may lead into a watched tree): the first
 * string is the opened file's own path, the second the path as given. */
#define SP_LINKED_PATH 8589934592
/* a[3] of a successful open named by the file it opened, its second string (with SP_OPENED_PATH):
 * a write-open of a watched file (watched_inodes) by another name, whose second string is the
 * watched path, or a ring's write-open kept for the file it opened (SP_URING_FD), as for
 * SP_LINKED_PATH. */
#define SP_NAMED_OPENED 17179869184
/* a[3], until the completion, of a ring's open whose result is a descriptor of the submitting
 * task (not O_TMPFILE, not a direct descriptor): the completion names the file it opened. */
#define SP_URING_FD 34359738368
/* Key size of link_heads (struct sp_head): a first path component of at most SP_HEAD_MAX - 1
 * bytes, zero-padded. */
#define SP_HEAD_MAX 32
/* Prefixes that end inside their first component (`/etc` also matches `/etcetera`) are kept in
 * struct sp_link_cfg as stems: at most this many, by their first 8 bytes. */
#define SP_HEAD_STEMS 8
/* Watched files by inode (struct sp_inode_key -> struct sp_inode_path): at most this many. A
 * write-open that reaches one of them under another name (a hard link) is named by the watched
 * path, as an audit file watch (which matches the inode) records it. */
#define SP_WATCHED_INODES 64

#ifndef SP_USER_SPACE
/* One record. a[] holds type-specific numbers (see docs/live.md); str holds nstr
 * NUL-terminated strings, str_len bytes in all. Only SP_HDR_SIZE + str_len bytes are sent. */
struct sp_event {
    u64 ts;
    u64 cgroup_id;
    u64 start_time;
    s64 ret;
    u64 a[6];
    u32 type;
    u32 pid;
    u32 tid;
    u32 ppid;
    u32 uid;
    u32 gid;
    u32 euid;
    u32 egid;
    u32 auid;
    u32 session;
    u16 str_len;
    u8 nstr;
    u8 flags;
    char comm[16];
    u32 lost_seq;
    char str[SP_STR_BUF];
};

struct sp_clause {
    u32 flags;
    u32 prefix_mask;
    u64 errno_mask;
};

/* The type's prefixes are listed here too, each by its first 8 bytes (head, masked to its
 * length) and its slot in `prefixes`: most paths differ from every prefix in those bytes, and
 * are told so without a map lookup per prefix. */
struct sp_type_cfg {
    u32 flags;
    u32 prefix_mask;
    u32 nclauses;
    u32 nprefixes;
    struct sp_clause c[SP_MAX_CLAUSES];
    u64 head[SP_MAX_PREFIXES];
    u64 head_mask[SP_MAX_PREFIXES];
    u32 slot[SP_MAX_PREFIXES];
};

struct sp_uid_key {
    u32 type;
    u32 uid;
};

struct sp_comm_key {
    u32 type;
    char comm[16];
};

struct sp_prefix {
    u32 len;
    u32 pad;
    u64 w[SP_PREFIX_WORDS];
};

struct sp_armed {
    u32 on;
    u32 self_tgid;
};

struct sp_head {
    char name[SP_HEAD_MAX];
};

struct sp_link_cfg {
    u32 on;
    u32 nstems;
    u64 stem[SP_HEAD_STEMS];
    u64 stem_mask[SP_HEAD_STEMS];
};

/* super_block.s_dev as the kernel encodes it (major << 20 | minor) and inode.i_ino */
struct sp_inode_key {
    u64 ino;
    u32 dev;
    u32 pad;
};

/* The watched path (NUL-terminated), its length with the NUL */
struct sp_inode_path {
    u32 len;
    char path[SP_PREFIX_WORDS * 8 + 4];
};

struct sp_pathbuf {
    char b[2 * SP_PATH_HALF];
};
#endif

#endif
