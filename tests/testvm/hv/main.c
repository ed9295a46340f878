/*
 * testvm: a small KVM hypervisor that stands in for vmm.ko plus a stock
 * bhyve, so that bhyve-gdbstub can be tested on Linux.
 *
 *   testvm --name NAME --cpus N --mem SIZE --guest demo [--serial FILE]
 *          [--spinup-delay MS] [--vmm-version 13|14|15] [--setup-ms MS]
 *          [--io-delay MS] [--x2apic-vcpu N] [--bootrom] [--fbuf]
 *   testvm --name NAME --cpus N --mem SIZE --linux VMLINUX [--cmdline STR] ...
 *
 * --linux boots a stock Linux vmlinux through its PVH entry (pvh.c), with
 * ACPI tables naming every vCPU (acpi.c), the in-kernel PIT, and APs that
 * the kernel starts with INIT/SIPI through its local APIC.
 *
 * --vmm-version picks the FreeBSD release whose vmm.ko and bhyve it imitates
 * (startup.c); 15, the newest, is the default.  --setup-ms is how long
 * bhyve's set-up takes between activating the vCPUs and resuming the BSP
 * (14 and later; default 20).  --io-delay makes each read of the userspace
 * MMIO device take MS to emulate, so a debugger can suspend a vCPU whose
 * exit is still pending.  --x2apic-vcpu starts one vCPU's local APIC in
 * x2APIC mode (as firmware may leave it), where its registers are MSRs and
 * not memory-mapped.  --bootrom adds a boot ROM segment below 4 GiB, as
 * bhyve -l does (the demo guest is loaded like bhyveload, which has none:
 * an AP released too early then runs into the hole, and the VM aborts).
 * --fbuf adds bhyve's framebuffer segment at 3 GiB, with known contents.
 *
 * Prints "ready NAME" once other processes can open the VM by name, runs
 * until SIGTERM/SIGINT or a guest power-off (status 0), a breakpoint abort
 * or unhandled exit (4, as bhyve), or a triple fault (3), and removes its
 * control socket on the way out.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "testvm.h"

static const char *prog_name = "testvm";

/*
 * What boots furthest on the slow dev-machine KVM.  nokaslr keeps the
 * kernel where its symbols say; lpj skips the delay-loop calibration that
 * would otherwise wait for timer ticks; tsc=reliable stops the clocksource
 * watchdog from distrusting a TSC that races ahead of a 1000x slower guest;
 * swiotlb=noforce saves the minute spent carving a 64 MiB bounce buffer.
 * kvm_pvm (shadow paging) cannot emulate xrstor, cmpxchg16b or popcnt when
 * they touch (or sit on) a page it write-protects, and it emulates the
 * first run of freshly patched kernel text: noxsave and clearcpuid keep
 * Linux off those instructions.  Its emulator has no clac/stac either: with
 * SMAP (in the host's CPUID) Linux patches clac into every interrupt entry,
 * and the first interrupt after that (the local APIC timer's, right after
 * mnt_init) died; clearcpuid=smap leaves those entries as nops.  (Only the
 * last clearcpuid= counts, so one list.)  Guest CPUID cannot hide them
 * there: it is the host's.  ../guest/README.md has the details.  panic=0:
 * with no root file system the boot ends in the VFS panic, and the kernel
 * then stays there with all its tasks for a debugger, rather than
 * rebooting (which ends the test VM, and QEMU with -no-reboot).
 */
#define LINUX_DEFAULT_CMDLINE \
	"console=ttyS0 earlyprintk=serial,ttyS0,115200 nokaslr lpj=1000000 " \
	"tsc=reliable swiotlb=noforce noxsave clearcpuid=cx16,popcnt,smap panic=0"

void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", prog_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	control_cleanup();
	devmem_cleanup();
	exit(1);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: testvm --name NAME --cpus N --mem SIZE\n"
	    "              (--guest demo | --linux VMLINUX [--cmdline STR])\n"
	    "              [--serial FILE] [--spinup-delay MS] [--vmm-version 13|14|15]\n"
	    "              [--setup-ms MS] [--io-delay MS] [--x2apic-vcpu N] [--bootrom]\n"
	    "              [--fbuf]\n");
	exit(2);
}

static uint64_t
parse_size(const char *s)
{
	char *end;
	uint64_t n = strtoull(s, &end, 0);

	switch (*end) {
	case 'G': case 'g': n <<= 30; end++; break;
	case 'M': case 'm': n <<= 20; end++; break;
	case 'K': case 'k': n <<= 10; end++; break;
	}
	if (*end != '\0' || n == 0)
		die("bad size '%s'", s);
	return n;
}

/* bhyve's VM names: the device node name, so no '/' and a short length. */
static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 31)
		return false;
	for (; *s; s++)
		if (!(*s == '-' || *s == '_' || *s == '.' ||
		    (*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		    (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

/* The demo guest is found next to this executable: build/guest.elf. */
static char *
demo_guest_path(void)
{
	static char path[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 16);
	char *slash;

	if (n < 0)
		die("readlink /proc/self/exe: %s", strerror(errno));
	path[n] = '\0';
	slash = strrchr(path, '/');
	strcpy(slash + 1, "guest.elf");
	return path;
}

/* Wait for SIGTERM/SIGINT or an exit request from a vCPU thread. */
static int
wait_for_exit(struct vm *vm, int sfd)
{
	struct pollfd p[2] = {
		{ .fd = sfd, .events = POLLIN },
		{ .fd = vm->exit_efd, .events = POLLIN },
	};

	while (!atomic_load(&vm->exiting)) {
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) == sizeof(si))
				vm_request_exit(vm, 0, NULL);
		}
	}
	return vm->exit_code;
}

int
main(int argc, char **argv)
{
	static struct vm vm = { .vmm_version = 15, .setup_ms = 20, .x2apic_vcpu = -1 };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "guest", required_argument, NULL, 'g' },
		{ "serial", required_argument, NULL, 's' },
		{ "spinup-delay", required_argument, NULL, 'd' },
		{ "vmm-version", required_argument, NULL, 'v' },
		{ "linux", required_argument, NULL, 'l' },
		{ "cmdline", required_argument, NULL, 'k' },
		{ "setup-ms", required_argument, NULL, 'S' },
		{ "io-delay", required_argument, NULL, 'D' },
		{ "x2apic-vcpu", required_argument, NULL, 'X' },
		{ "bootrom", no_argument, NULL, 'B' },
		{ "fbuf", no_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	const char *guest = NULL, *serial = NULL, *dir;
	const char *vmlinux = NULL, *cmdline = LINUX_DEFAULT_CMDLINE;
	uint64_t mem = 256ULL << 20;
	bool bootrom = false, fbuf = false;
	sigset_t blocked;
	int c, sfd;

	vm.ncpus = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'n': vm.name = optarg; break;
		case 'c': vm.ncpus = atoi(optarg); break;
		case 'm': mem = parse_size(optarg); break;
		case 'g': guest = optarg; break;
		case 's': serial = optarg; break;
		case 'd': vm.spinup_delay_ms = atoi(optarg); break;
		case 'v': vm.vmm_version = atoi(optarg); break;
		case 'l': vmlinux = optarg; break;
		case 'k': cmdline = optarg; break;
		case 'S': vm.setup_ms = atoi(optarg); break;
		case 'D': vm.io_delay_ms = atoi(optarg); break;
		case 'X': vm.x2apic_vcpu = atoi(optarg); break;
		case 'B': bootrom = true; break;
		case 'F': fbuf = true; break;
		default: usage();
		}
	}
	if (vm.name == NULL || (guest == NULL) == (vmlinux == NULL) ||
	    optind != argc)
		usage();
	if (!valid_name(vm.name))
		die("invalid VM name '%s'", vm.name);
	if (vm.ncpus < 1 || vm.ncpus > TVM_MAXCPU)
		die("--cpus must be 1..%d", TVM_MAXCPU);
	if (guest != NULL && strcmp(guest, "demo") != 0)
		die("unknown guest '%s' (only 'demo')", guest);
	if (vm.vmm_version < 13 || vm.vmm_version > 15)
		die("--vmm-version must be 13, 14 or 15");
	if (vm.x2apic_vcpu >= vm.ncpus)
		die("--x2apic-vcpu must name one of the %d vCPUs", vm.ncpus);

	/*
	 * Signals: SIGTERM/SIGINT go to main through a signalfd, the kick
	 * signal only to the vCPU thread it targets, SIGPIPE to nobody.
	 */
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGTERM);
	sigaddset(&blocked, SIGINT);
	sigaddset(&blocked, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &blocked, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigdelset(&blocked, SIGUSR1);
	sfd = signalfd(-1, &blocked, SFD_CLOEXEC);

	dir = getenv("TESTVM_DIR");
	control_listen(&vm, dir != NULL && *dir ? dir : TVM_DEFAULT_DIR);
	dev_serial_open(&vm, serial);
	vm.lapic_sipi = vmlinux != NULL;
	vm_create_kvm(&vm, mem);
	if (fbuf)
		fbuf_create(&vm, dir != NULL && *dir ? dir : TVM_DEFAULT_DIR);
	if (bootrom)
		bootrom_create(&vm, dir != NULL && *dir ? dir : TVM_DEFAULT_DIR);
	if (vmlinux != NULL)
		sk_require_kvm("the Linux guest");
	for (int i = 0; i < vm.ncpus; i++)
		vcpu_create(&vm, i);
	if (vmlinux != NULL)
		load_linux_guest(&vm, vmlinux, cmdline);
	else
		load_demo_guest(&vm, demo_guest_path());

	control_start(&vm);
	vcpu_start_threads(&vm);
	startup_release_bsp(&vm);
	printf("ready %s\n", vm.name);
	fflush(stdout);

	int code = wait_for_exit(&vm, sfd);
	control_cleanup();
	devmem_cleanup();
	/* vCPU threads may be inside KVM_RUN: leave without joining them. */
	_exit(code);
}
