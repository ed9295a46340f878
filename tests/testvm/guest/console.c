/*
 * Console on COM1.  The hypervisor's UART is always ready to transmit, so
 * each byte is one OUT; a spinlock keeps lines from different vCPUs whole.
 */
#include "guest.h"

static volatile int console_lock;

static void
lock(void)
{
	while (__atomic_exchange_n(&console_lock, 1, __ATOMIC_ACQUIRE))
		while (console_lock)
			;
}

static void
unlock(void)
{
	__atomic_store_n(&console_lock, 0, __ATOMIC_RELEASE);
}

static void
puts_unlocked(const char *s)
{
	for (; *s; s++)
		outb(TVM_PORT_COM1, (uint8_t)*s);
}

void
console_puts(const char *s)
{
	lock();
	puts_unlocked(s);
	unlock();
}

/* "vcpuN <what>\n" as one line. */
void
console_put_vcpu_line(int cpu, const char *what)
{
	char id[3] = { (char)('0' + cpu), ' ', 0 };

	lock();
	puts_unlocked("vcpu");
	puts_unlocked(id);
	puts_unlocked(what);
	puts_unlocked("\n");
	unlock();
}
