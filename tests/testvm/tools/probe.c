/*
 * probe: drive a libvmmapi from a separate process, as the debug server
 * does, and print what comes back.  testvm_test.ts runs it against both
 * libvmmapi.so.5 and .so.6 and makes its assertions on the output.
 *
 *   probe LIBRARY VMNAME COMMAND [ARGS]... [COMMAND [ARGS]...]...
 *
 * Like the project's ffi/ layer, it dlopen()s the library and picks the API
 * generation at run time: 0200 if vm_vcpu_open is exported, else 0103.
 * Every command prints one line: its name and arguments, then key=value
 * results, or err=ENAME on failure.  Numbers are hex with 0x.  Commands:
 *
 *   active | debug | suspended        cpusets as a list: cpus=0,1,3
 *   suspend V|all   resume V|all      (all: vm_suspend_all_cpus or vcpu -1)
 *   reg V R   setreg V R VAL   regset V R,R,...   seg V R
 *   paging V                          bhyve's stub rules: cr3 cpu_mode paging_mode
 *   xlate V GLA                       with vCPU V's own paging
 *   xlatep V GLA CR3 CPUMODE PAGINGMODE CPL PROT    explicit vm_guest_paging
 *   readv V GLA LEN   readp GPA LEN   u64p GPA   writep GPA U32
 *   kernemu V GPA SIZE   kernemuw V GPA VAL
 *   cap V C   setcap V C VAL   mmap   memseg ID   topology
 *   sleep MS   wait (reads a line from stdin)   close
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmmapi.h"

/* Unprototyped pointers: one table serves both API generations. */
typedef int (*fn_t)();
static struct {
	void *(*open)(const char *);
	void (*close)(void *);
	void *(*vcpu_open)(void *, int);	/* NULL on 0103 */
	fn_t get_register, set_register, get_register_set, get_seg_desc,
	    gla2gpa_nofault, mmap_getnext, get_memseg, get_device_fd,
	    suspend_all_cpus, resume_all_cpus, suspend_cpu, resume_cpu,
	    active_cpus, suspended_cpus, debug_cpus, get_capability,
	    set_capability, kernemu, get_topology;
} api;

static void *ctx;
static void *vcpus[TVM_CPUSET_BYTES * 8];

/* A per-vCPU call in either generation: (vcpu, ...) or (ctx, id, ...). */
#define VCALL(fn, id, ...) (api.vcpu_open != NULL ? \
	api.fn(vcpu_handle(id), __VA_ARGS__) : api.fn(ctx, (int)(id), __VA_ARGS__))
#define VCALL0(fn, id) (api.vcpu_open != NULL ? \
	api.fn(vcpu_handle(id)) : api.fn(ctx, (int)(id)))

static void *
vcpu_handle(long id)
{
	if (id < 0 || id >= (long)(sizeof(vcpus) / sizeof(vcpus[0])))
		return NULL;
	if (vcpus[id] == NULL)
		vcpus[id] = api.vcpu_open(ctx, (int)id);
	return vcpus[id];
}

static void *
sym(void *lib, const char *name, int required)
{
	void *p = dlsym(lib, name);

	if (p == NULL && required) {
		fprintf(stderr, "probe: %s lacks %s\n", "library", name);
		exit(2);
	}
	return p;
}

static void
load(const char *path)
{
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);

	if (lib == NULL) {
		fprintf(stderr, "probe: %s\n", dlerror());
		exit(2);
	}
	api.open = sym(lib, "vm_open", 1);
	api.close = sym(lib, "vm_close", 1);
	api.vcpu_open = sym(lib, "vm_vcpu_open", 0);
	api.get_register = sym(lib, "vm_get_register", 1);
	api.set_register = sym(lib, "vm_set_register", 1);
	api.get_register_set = sym(lib, "vm_get_register_set", 1);
	api.get_seg_desc = sym(lib, "vm_get_seg_desc", 1);
	api.gla2gpa_nofault = sym(lib, "vm_gla2gpa_nofault", 1);
	api.mmap_getnext = sym(lib, "vm_mmap_getnext", 1);
	api.get_memseg = sym(lib, "vm_get_memseg", 1);
	api.get_device_fd = sym(lib, "vm_get_device_fd", 1);
	api.suspend_all_cpus = sym(lib, "vm_suspend_all_cpus", api.vcpu_open != NULL);
	api.resume_all_cpus = sym(lib, "vm_resume_all_cpus", 1);
	api.suspend_cpu = sym(lib, "vm_suspend_cpu", 1);
	api.resume_cpu = sym(lib, "vm_resume_cpu", 1);
	api.active_cpus = sym(lib, "vm_active_cpus", 1);
	api.suspended_cpus = sym(lib, "vm_suspended_cpus", 1);
	api.debug_cpus = sym(lib, "vm_debug_cpus", 1);
	api.get_capability = sym(lib, "vm_get_capability", 1);
	api.set_capability = sym(lib, "vm_set_capability", 1);
	api.kernemu = sym(lib, "vm_readwrite_kernemu_device", 1);
	api.get_topology = sym(lib, "vm_get_topology", 1);
}

static const char *
errname(int e)
{
	switch (e) {
	case EINVAL: return "EINVAL";
	case ENOENT: return "ENOENT";
	case ENXIO: return "ENXIO";
	case EBADF: return "EBADF";
	case EFAULT: return "EFAULT";
	case EBUSY: return "EBUSY";
	case EIO: return "EIO";
	case ETIMEDOUT: return "ETIMEDOUT";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	default: return "EOTHER";
	}
}

/* Print "err=..." if rc failed; return nonzero then. */
static int
failed(int rc)
{
	if (rc == 0)
		return 0;
	printf(" err=%s errno=%d\n", errname(errno), errno);
	return 1;
}

static unsigned long long
num(const char *s)
{
	return strtoull(s, NULL, 0);
}

static long
vcpu_arg(const char *s)
{
	return strcmp(s, "all") == 0 ? -1 : strtol(s, NULL, 0);
}

static void
print_cpuset(const char *what, fn_t fn)
{
	cpuset_t set;
	const char *sep = "";

	/*
	 * The library copies sizeof(cpuset_t) of its FreeBSD release: 128
	 * bytes on 14 and later (0200), 32 on 13.x (0103).  Exactly that:
	 * the bytes beyond must stay as they were.
	 */
	size_t bytes = api.vcpu_open != NULL ? 128 : 32;

	printf("%s", what);
	memset(&set, 0xa5, sizeof(set));
	if (failed(fn(ctx, &set)))
		return;
	for (size_t i = bytes; i < sizeof(set); i++) {
		if (((const uint8_t *)&set)[i] != 0xa5) {
			printf(" err=cpuset_t_overrun\n");
			return;
		}
	}
	printf(" cpus=");
	for (size_t i = 0; i < bytes * 8; i++) {
		if ((set.__bits[i / 64] >> (i % 64)) & 1) {
			printf("%s%zu", sep, i);
			sep = ",";
		}
	}
	printf("\n");
}

/* How bhyve's gdb stub derives vm_guest_paging (vmm-facts.md section 3). */
static int
own_paging(long v, struct vm_guest_paging *p)
{
	int regs[4] = { VM_REG_GUEST_CR0, VM_REG_GUEST_CR3, VM_REG_GUEST_CR4,
	    VM_REG_GUEST_EFER };
	uint64_t val[4];

	if (VCALL(get_register_set, v, 4, regs, val) != 0)
		return -1;
	uint64_t cr0 = val[0], cr4 = val[2], efer = val[3];
	p->cr3 = val[1];
	p->cpl = 0;
	p->cpu_mode = (efer & 0x400) ? CPU_MODE_64BIT :
	    (cr0 & 1) ? CPU_MODE_PROTECTED : CPU_MODE_REAL;
	p->paging_mode = !(cr0 & 0x80000000) ? PAGING_MODE_FLAT :
	    !(cr4 & 0x20) ? PAGING_MODE_32 :
	    (efer & 0x100) ? ((cr4 & 0x1000) ? PAGING_MODE_64_LA57 : PAGING_MODE_64) :
	    PAGING_MODE_PAE;
	return 0;
}

static void
print_bytes(const unsigned char *b, size_t n)
{
	printf(" hex=");
	for (size_t i = 0; i < n; i++)
		printf("%02x", b[i]);
	printf(" str=");
	for (size_t i = 0; i < n && b[i] != 0; i++)
		putchar(b[i] >= 0x20 && b[i] < 0x7f && b[i] != ' ' ? b[i] : '_');
	printf("\n");
}

static void
read_phys(uint64_t gpa, size_t len)
{
	unsigned char buf[256];
	int fd = api.get_device_fd(ctx);

	if (len > sizeof(buf))
		len = sizeof(buf);
	if (pread(fd, buf, len, (off_t)gpa) != (ssize_t)len) {
		printf(" err=%s errno=%d\n", errname(errno), errno);
		return;
	}
	print_bytes(buf, len);
}

static void
xlate(long v, uint64_t gla, struct vm_guest_paging *p, int prot)
{
	uint64_t gpa = 0;
	int fault = 0;

	if (failed(VCALL(gla2gpa_nofault, v, p, gla, prot, &gpa, &fault)))
		return;
	printf(" gpa=0x%llx fault=%d\n", fault ? 0ULL : (unsigned long long)gpa,
	    fault);
}

/* Run one command at argv[0]; return how many words it used. */
static int
run(char **a, int n)
{
	struct vm_guest_paging p;
	uint64_t u = 0;
	int i = 0;

#define NEED(k) do { if (n < (k) + 1) { fprintf(stderr, "probe: %s needs %d args\n", a[0], k); exit(2); } \
	printf("%s", a[0]); for (int j_ = 1; j_ <= (k); j_++) printf(" %s", a[j_]); } while (0)

	if (strcmp(a[0], "active") == 0 || strcmp(a[0], "debug") == 0 ||
	    strcmp(a[0], "suspended") == 0) {
		print_cpuset(a[0], a[0][0] == 'a' ? api.active_cpus :
		    a[0][0] == 'd' ? api.debug_cpus : api.suspended_cpus);
		return 1;
	}
	if (strcmp(a[0], "suspend") == 0 || strcmp(a[0], "resume") == 0) {
		NEED(1);
		long v = vcpu_arg(a[1]);
		bool sus = a[0][0] == 's';
		int rc = v >= 0 ? (sus ? VCALL0(suspend_cpu, v) : VCALL0(resume_cpu, v)) :
		    !sus ? api.resume_all_cpus(ctx) :
		    api.vcpu_open != NULL ? api.suspend_all_cpus(ctx) :
		    api.suspend_cpu(ctx, -1);	/* 0103: vcpu -1 is "all" */
		if (!failed(rc))
			printf(" ok\n");
		return 2;
	}
	if (strcmp(a[0], "reg") == 0) {
		NEED(2);
		if (!failed(VCALL(get_register, vcpu_arg(a[1]), (int)num(a[2]), &u)))
			printf(" value=0x%llx\n", (unsigned long long)u);
		return 3;
	}
	if (strcmp(a[0], "setreg") == 0) {
		NEED(3);
		if (!failed(VCALL(set_register, vcpu_arg(a[1]), (int)num(a[2]), (uint64_t)num(a[3]))))
			printf(" ok\n");
		return 4;
	}
	if (strcmp(a[0], "regset") == 0) {
		NEED(2);
		int regs[128];
		uint64_t vals[128];
		char *list = strdup(a[2]), *tok, *save;
		for (tok = strtok_r(list, ",", &save); tok && i < 128; tok = strtok_r(NULL, ",", &save))
			regs[i++] = (int)num(tok);
		free(list);
		if (!failed(VCALL(get_register_set, vcpu_arg(a[1]), (unsigned)i, regs, vals))) {
			printf(" values=");
			for (int j = 0; j < i; j++)
				printf("%s0x%llx", j ? "," : "", (unsigned long long)vals[j]);
			printf("\n");
		}
		return 3;
	}
	if (strcmp(a[0], "seg") == 0) {
		NEED(2);
		struct seg_desc d;
		if (!failed(VCALL(get_seg_desc, vcpu_arg(a[1]), (int)num(a[2]), &d)))
			printf(" base=0x%llx limit=0x%x access=0x%x\n",
			    (unsigned long long)d.base, d.limit, d.access);
		return 3;
	}
	if (strcmp(a[0], "paging") == 0) {
		NEED(1);
		if (!failed(own_paging(vcpu_arg(a[1]), &p)))
			printf(" cr3=0x%llx cpu_mode=%d paging_mode=%d\n",
			    (unsigned long long)p.cr3, p.cpu_mode, p.paging_mode);
		return 2;
	}
	if (strcmp(a[0], "xlate") == 0) {
		NEED(2);
		if (!failed(own_paging(vcpu_arg(a[1]), &p)))
			xlate(vcpu_arg(a[1]), num(a[2]), &p, 1);
		return 3;
	}
	if (strcmp(a[0], "xlatep") == 0) {
		NEED(7);
		p.cr3 = num(a[3]);
		p.cpu_mode = (int)num(a[4]);
		p.paging_mode = (int)num(a[5]);
		p.cpl = (int)num(a[6]);
		xlate(vcpu_arg(a[1]), num(a[2]), &p, (int)num(a[7]));
		return 8;
	}
	if (strcmp(a[0], "readv") == 0) {
		NEED(3);
		uint64_t gpa = 0;
		int fault = 0;
		long v = vcpu_arg(a[1]);
		if (failed(own_paging(v, &p)) ||
		    failed(VCALL(gla2gpa_nofault, v, &p, num(a[2]), 1, &gpa, &fault)))
			return 4;
		if (fault) {
			printf(" fault=1\n");
			return 4;
		}
		printf(" gpa=0x%llx", (unsigned long long)gpa);
		read_phys(gpa, num(a[3]));
		return 4;
	}
	if (strcmp(a[0], "readp") == 0) {
		NEED(2);
		read_phys(num(a[1]), num(a[2]));
		return 3;
	}
	if (strcmp(a[0], "u64p") == 0) {
		NEED(1);
		if (pread(api.get_device_fd(ctx), &u, 8, (off_t)num(a[1])) == 8)
			printf(" value=%llu\n", (unsigned long long)u);
		else
			printf(" err=%s errno=%d\n", errname(errno), errno);
		return 2;
	}
	if (strcmp(a[0], "writep") == 0) {
		NEED(2);
		uint32_t w = (uint32_t)num(a[2]);
		if (pwrite(api.get_device_fd(ctx), &w, 4, (off_t)num(a[1])) == 4)
			printf(" ok\n");
		else
			printf(" err=%s errno=%d\n", errname(errno), errno);
		return 3;
	}
	if (strcmp(a[0], "kernemu") == 0) {
		NEED(3);
		if (!failed(VCALL(kernemu, vcpu_arg(a[1]), num(a[2]), 0, (int)num(a[3]), &u)))
			printf(" value=0x%llx\n", (unsigned long long)u);
		return 4;
	}
	if (strcmp(a[0], "kernemuw") == 0) {
		NEED(3);
		u = num(a[3]);
		if (!failed(VCALL(kernemu, vcpu_arg(a[1]), num(a[2]), 1, 4, &u)))
			printf(" ok\n");
		return 4;
	}
	if (strcmp(a[0], "cap") == 0) {
		NEED(2);
		int val = 0;
		if (!failed(VCALL(get_capability, vcpu_arg(a[1]), (int)num(a[2]), &val)))
			printf(" value=%d\n", val);
		return 3;
	}
	if (strcmp(a[0], "setcap") == 0) {
		NEED(3);
		if (!failed(VCALL(set_capability, vcpu_arg(a[1]), (int)num(a[2]), (int)num(a[3]))))
			printf(" ok\n");
		return 4;
	}
	if (strcmp(a[0], "mmap") == 0) {
		NEED(0);
		vm_paddr_t gpa = 0;
		int segid, prot, flags, k = 0;
		vm_ooffset_t segoff;
		size_t len;
		while (api.mmap_getnext(ctx, &gpa, &segid, &segoff, &len, &prot, &flags) == 0) {
			printf(" range%d=0x%llx+0x%zx,seg%d@0x%llx,prot%d,flags%d", k++,
			    (unsigned long long)gpa, len, segid, (long long)segoff, prot, flags);
			gpa += len;
		}
		printf(" count=%d end=%s\n", k, errname(errno));
		return 1;
	}
	if (strcmp(a[0], "memseg") == 0) {
		NEED(1);
		size_t len = 0;
		char name[64] = "x";
		if (!failed(api.get_memseg(ctx, (int)num(a[1]), &len, name, sizeof(name))))
			printf(" len=0x%zx name=\"%s\"\n", len, name);
		return 2;
	}
	if (strcmp(a[0], "topology") == 0) {
		NEED(0);
		uint16_t s, c, t, m;
		if (!failed(api.get_topology(ctx, &s, &c, &t, &m)))
			printf(" sockets=%u cores=%u threads=%u maxcpus=%u\n", s, c, t, m);
		return 1;
	}
	if (strcmp(a[0], "sleep") == 0) {
		NEED(1);
		usleep((useconds_t)num(a[1]) * 1000);
		printf(" ok\n");
		return 2;
	}
	if (strcmp(a[0], "wait") == 0) {
		char line[64];
		NEED(0);
		fflush(stdout);
		if (fgets(line, sizeof(line), stdin) == NULL) {
			/* EOF is a go too */
		}
		printf(" ok\n");
		return 1;
	}
	if (strcmp(a[0], "close") == 0) {
		NEED(0);
		api.close(ctx);
		ctx = NULL;
		printf(" ok\n");
		return 1;
	}
	fprintf(stderr, "probe: unknown command %s\n", a[0]);
	exit(2);
#undef NEED
}

int
main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: probe LIBRARY VMNAME COMMAND...\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	load(argv[1]);
	printf("api %s\n", api.vcpu_open != NULL ? "0200" : "0103");
	ctx = api.open(argv[2]);
	if (ctx == NULL) {
		printf("open err=%s errno=%d\n", errname(errno), errno);
		return 3;
	}
	printf("open ok fd=%d\n", api.get_device_fd(ctx));
	for (int i = 3; i < argc; )
		i += run(argv + i, argc - i);
	return 0;
}
