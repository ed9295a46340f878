/*
 * The control endpoint: $TESTVM_DIR/NAME, the test VM's /dev/vmm/NAME.
 *
 * Any number of processes may connect (as any number may open the vmm
 * device).  Each connection gets a thread that executes one request at a
 * time with vmm.ko's rules: per-vCPU requests freeze their vCPU first and
 * fail with EINVAL for a vCPU that does not exist.  The name is the only
 * way in: a second live VM with the same name is refused, a socket left by
 * a dead process is replaced.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "testvm.h"

static char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static bool sock_owned;
static int listen_fd = -1;

void
control_cleanup(void)
{
	if (sock_owned)
		unlink(sock_path);
	sock_owned = false;
}

static bool
name_is_live(const struct sockaddr_un *sa)
{
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool live = connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0;

	close(fd);
	return live;
}

/*
 * The endpoint appears only once it accepts connections, as /dev/vmm/NAME does on FreeBSD
 * (vm_open works from the moment the node exists; `w` mode opens once when it appears): bind
 * and listen under a hidden name, then rename it into place.
 */
int
control_listen(struct vm *vm, const char *dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct sockaddr_un tmp = { .sun_family = AF_UNIX };

	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		die("%s: %s", dir, strerror(errno));
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", dir,
	    vm->name) >= sizeof(sa.sun_path) ||
	    (size_t)snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s/.%s.%d", dir,
	    vm->name, (int)getpid()) >= sizeof(tmp.sun_path))
		die("control socket path %s/%s is too long", dir, vm->name);
	if (name_is_live(&sa))
		die("a VM named '%s' is already running (%s)", vm->name,
		    sa.sun_path);
	listen_fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		die("socket: %s", strerror(errno));
	unlink(tmp.sun_path);
	if (bind(listen_fd, (struct sockaddr *)&tmp, sizeof(tmp)) < 0)
		die("bind %s: %s", tmp.sun_path, strerror(errno));
	if (listen(listen_fd, 16) < 0) {
		unlink(tmp.sun_path);
		die("listen: %s", strerror(errno));
	}
	/* Replaces a stale endpoint whose owner is gone. */
	if (rename(tmp.sun_path, sa.sun_path) < 0) {
		unlink(tmp.sun_path);
		die("rename %s: %s", sa.sun_path, strerror(errno));
	}
	strcpy(sock_path, sa.sun_path);
	sock_owned = true;
	return 0;
}

/* ---- request execution ------------------------------------------------ */

/*
 * The guest-physical map in address order, as vm_mmap_getnext walks it:
 * bhyve maps one SYSMEM segment twice, [0, lowmem) and 4 GiB onwards, and
 * each device-memory segment (framebuffer, boot ROM) in the hole between.
 */
static int
mmap_getnext(struct vm *vm, uint64_t gpa, struct tvm_resp *resp)
{
	const struct devmem *dm[TVM_MAXDEVMEM];
	uint64_t maps[2 + TVM_MAXDEVMEM][5] = {	/* gpa, len, segid, segoff, prot */
		{ 0, vm->lowmem, VM_SYSMEM, 0, PROT_READ | PROT_WRITE | PROT_EXEC },
	};
	int n = 1, ndm = devmem_list(dm, TVM_MAXDEVMEM);

	for (int i = 0; i < ndm; i++, n++) {
		maps[n][0] = dm[i]->gpa;
		maps[n][1] = dm[i]->len;
		maps[n][2] = (uint64_t)dm[i]->segid;
		maps[n][3] = dm[i]->segoff;
		maps[n][4] = (uint64_t)dm[i]->prot;
	}
	maps[n][0] = TVM_HIGHMEM_BASE;
	maps[n][1] = vm->highmem;
	maps[n][2] = VM_SYSMEM;
	maps[n][3] = vm->lowmem;
	maps[n][4] = PROT_READ | PROT_WRITE | PROT_EXEC;
	n++;
	for (int i = 0; i < n; i++) {
		if (maps[i][0] < gpa || maps[i][1] == 0)
			continue;
		resp->val[0] = maps[i][0];
		resp->val[1] = maps[i][2];
		resp->val[2] = maps[i][3];
		resp->val[3] = maps[i][1];
		resp->val[4] = maps[i][4];
		resp->val[5] = 0;		/* not wired, no IOMMU */
		return 0;
	}
	return ENOENT;
}

/* vm_get_memseg: system memory is unnamed, device memory has a name. */
static int
get_memseg(struct vm *vm, int64_t ident, struct tvm_resp *resp)
{
	int max = vm->vmm_version >= 15 ? 11 : 4;	/* VM_MAX_MEMSEGS */
	const struct devmem *d;

	if (ident < 0 || ident >= max)
		return EINVAL;
	resp->val[0] = 0;
	if (ident == VM_SYSMEM) {
		resp->val[0] = vm->lowmem + vm->highmem;
	} else if ((d = devmem_by_segid((int)ident)) != NULL) {
		resp->val[0] = d->seg_size;
		snprintf((char *)&resp->val[1], sizeof(resp->val) -
		    sizeof(resp->val[0]), "%s", d->name);
	}
	return 0;
}

static int
vcpu_request(struct vm *vm, const struct tvm_req *req, struct tvm_resp *resp)
{
	struct vcpu *v;
	struct seg_desc d;
	int err = 0, ival = 0;

	if (req->vcpu < 0 || req->vcpu >= vm->ncpus)
		return EINVAL;
	v = &vm->vcpu[req->vcpu];
	vcpu_freeze(v);
	switch (req->op) {
	case TVM_OP_GET_REGS:
	case TVM_OP_SET_REGS:
		if (req->count > TVM_MAXREGS) {
			err = EINVAL;
			break;
		}
		for (uint32_t i = 0; i < req->count && err == 0; i++)
			err = req->op == TVM_OP_GET_REGS ?
			    regs_get(v, req->regs[i], &resp->val[i]) :
			    regs_set(v, req->regs[i], req->arg[i]);
		break;
	case TVM_OP_GET_SEGDESC:
		err = regs_get_segdesc(v, req->regs[0], &d);
		resp->val[0] = d.base;
		resp->val[1] = d.limit;
		resp->val[2] = d.access;
		break;
	case TVM_OP_GLA2GPA: {
		int fault = 0;

		err = paging_gla2gpa(vm, &req->paging, req->arg[0],
		    (int)req->arg[1], &resp->val[0], &fault);
		resp->val[1] = fault;
		break;
	}
	case TVM_OP_GET_CAP:
		err = vcpu_get_cap(v, (int)req->arg[0], &ival);
		resp->val[0] = (uint64_t)(int64_t)ival;
		break;
	case TVM_OP_SET_CAP:
		err = vcpu_set_cap(v, (int)req->arg[0], (int)req->arg[1]);
		break;
	case TVM_OP_KERNEMU:
		resp->val[0] = req->arg[3];
		err = dev_kernemu(v, req->arg[0], req->arg[1] != 0,
		    (int)req->arg[2], &resp->val[0]);
		break;
	case TVM_OP_GET_STATS:	/* VM_STATS locks (freezes) one vCPU too */
		resp->val[TVM_STAT_VMEXIT_USERSPACE] =
		    atomic_load(&v->userspace_exits);
		break;
	case TVM_OP_X2APIC_STATE:
		/*
		 * vm_get_x2apic_state reports bhyve's setting (-x), which
		 * allows the guest x2APIC mode; KVM always offers it here.
		 */
		resp->val[0] = X2APIC_ENABLED;
		break;
	default:
		err = EINVAL;
	}
	vcpu_unfreeze(v);
	return err;
}

static int
execute(struct vm *vm, const struct tvm_req *req, struct tvm_resp *resp)
{
	switch (req->op) {
	case TVM_OP_KSTATE:
		return 0;	/* the fd goes with the reply */
	case TVM_OP_HELLO:
		resp->val[0] = vm->ncpus;
		resp->val[1] = vm->lowmem;
		resp->val[2] = vm->highmem;
		return 0;
	case TVM_OP_MMAP_GETNEXT:
		return mmap_getnext(vm, req->arg[0], resp);
	case TVM_OP_GET_MEMSEG:
		return get_memseg(vm, (int64_t)req->arg[0], resp);
	case TVM_OP_SUSPEND_CPU:
		return vcpu_suspend(vm, req->vcpu);
	case TVM_OP_RESUME_CPU:
		return vcpu_resume(vm, req->vcpu);

	case TVM_OP_TOPOLOGY:
		/* bhyve's default topology: one single-threaded socket per vCPU */
		resp->val[0] = vm->ncpus;
		resp->val[1] = 1;
		resp->val[2] = 1;
		resp->val[3] = vm->ncpus;
		return 0;
	default:
		return vcpu_request(vm, req, resp);
	}
}

/* ---- connections ------------------------------------------------------ */

static int
send_resp(int fd, const struct tvm_resp *resp, int pass_fd)
{
	struct iovec iov = { .iov_base = (void *)resp, .iov_len = sizeof(*resp) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };

	if (pass_fd >= 0) {
		msg.msg_control = u.buf;
		msg.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
	}
	return sendmsg(fd, &msg, MSG_NOSIGNAL) == (ssize_t)sizeof(*resp) ? 0 : -1;
}

struct conn {
	struct vm *vm;
	int fd;
};

static void *
conn_thread(void *arg)
{
	struct conn *c = arg;
	struct tvm_req *req = malloc(sizeof(*req));
	struct tvm_resp *resp = malloc(sizeof(*resp));

	for (;;) {
		ssize_t n = recv(c->fd, req, sizeof(*req), 0);

		if (n <= 0)
			break;
		memset(resp, 0, sizeof(*resp));
		if (n == sizeof(*req) && req->magic == TVM_PROTO_MAGIC &&
		    req->op == TVM_OP_KICK) {
			/* vm_suspend_cpu's vcpu_notify_event: the caller does not wait. */
			(void)vcpu_suspend(c->vm, req->vcpu);
			continue;
		}
		if (n != sizeof(*req) || req->magic != TVM_PROTO_MAGIC)
			resp->error = EINVAL;
		else
			resp->error = execute(c->vm, req, resp);
		int pass = -1;

		if (resp->error == 0 && n == sizeof(*req))
			pass = req->op == TVM_OP_HELLO ? c->vm->mem_fd :
			    req->op == TVM_OP_KSTATE ? c->vm->kstate_fd : -1;
		if (send_resp(c->fd, resp, pass) < 0)
			break;
	}
	close(c->fd);
	free(req);
	free(resp);
	free(c);
	return NULL;
}

static void *
accept_thread(void *arg)
{
	struct vm *vm = arg;

	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		pthread_t t;

		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			break;
		}
		struct conn *c = malloc(sizeof(*c));
		c->vm = vm;
		c->fd = fd;
		if (pthread_create(&t, NULL, conn_thread, c) != 0) {
			close(fd);
			free(c);
			continue;
		}
		pthread_detach(t);
	}
	return NULL;
}

void
control_start(struct vm *vm)
{
	pthread_t t;

	if (pthread_create(&t, NULL, accept_thread, vm) != 0)
		die("pthread_create: %s", strerror(errno));
	pthread_detach(t);
}
