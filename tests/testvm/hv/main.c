/*
 * testvm: a small KVM hypervisor that stands in for vmm.ko plus a stock
 * bhyve, so that bhyve-gdbstub can be tested on Linux.
 *
 *   testvm --name NAME --cpus N --mem SIZE --guest demo [--serial FILE]
 *          [--spinup-delay MS] [--vmm-version 13|14|15]
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
	exit(1);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: testvm --name NAME --cpus N --mem SIZE --guest demo\n"
	    "              [--serial FILE] [--spinup-delay MS] [--vmm-version 13|14|15]\n");
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
	static struct vm vm = { .vmm_version = 15 };
	static const struct option opts[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "cpus", required_argument, NULL, 'c' },
		{ "mem", required_argument, NULL, 'm' },
		{ "guest", required_argument, NULL, 'g' },
		{ "serial", required_argument, NULL, 's' },
		{ "spinup-delay", required_argument, NULL, 'd' },
		{ "vmm-version", required_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *guest = NULL, *serial = NULL, *dir;
	uint64_t mem = 256ULL << 20;
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
		default: usage();
		}
	}
	if (vm.name == NULL || guest == NULL || optind != argc)
		usage();
	if (!valid_name(vm.name))
		die("invalid VM name '%s'", vm.name);
	if (vm.ncpus < 1 || vm.ncpus > TVM_MAXCPU)
		die("--cpus must be 1..%d", TVM_MAXCPU);
	if (strcmp(guest, "demo") != 0)
		die("unknown guest '%s' (only 'demo')", guest);
	if (vm.vmm_version < 13 || vm.vmm_version > 15)
		die("--vmm-version must be 13, 14 or 15");

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
	vm_create_kvm(&vm, mem);
	for (int i = 0; i < vm.ncpus; i++)
		vcpu_create(&vm, i);
	load_demo_guest(&vm, demo_guest_path());

	control_start(&vm);
	vcpu_start_threads(&vm);
	printf("ready %s\n", vm.name);
	fflush(stdout);

	int code = wait_for_exit(&vm, sfd);
	control_cleanup();
	/* vCPU threads may be inside KVM_RUN: leave without joining them. */
	_exit(code);
}
