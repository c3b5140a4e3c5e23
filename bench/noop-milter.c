/*
 * noop-milter.c - the libmilter baseline for gatehouse's benchmarks.
 *
 * A milter that does nothing, as cheaply as libmilter allows, while still
 * paying the full price of the protocol: it registers every callback, so
 * libmilter asks the MTA (here: gatehouse-load) to send every event and
 * waits for it to reply to each one.  Measuring gatehouse against this
 * answers "how fast is the stock C library when the filter itself costs
 * nothing?".
 *
 * Build:  gcc -O2 -o noop-milter bench/noop-milter.c -lmilter -lpthread
 * Run:    noop-milter unix:/path/to/socket     (libmilter socket syntax;
 *         inet:PORT@HOST and inet6:... work too)
 *
 * Used by bench/run.sh; not part of the gatehouse product.
 */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <libmilter/mfapi.h>

/*
 * Every callback returns SMFIS_CONTINUE and touches no state: no private
 * context is allocated, no macro is looked up.  Anything more would make
 * the baseline slower and flatter gatehouse.
 */

static sfsistat
noop_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	(void) ctx;
	(void) hostname;
	(void) hostaddr;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_helo(SMFICTX *ctx, char *helohost)
{
	(void) ctx;
	(void) helohost;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_envfrom(SMFICTX *ctx, char **argv)
{
	(void) ctx;
	(void) argv;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_envrcpt(SMFICTX *ctx, char **argv)
{
	(void) ctx;
	(void) argv;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_header(SMFICTX *ctx, char *name, char *value)
{
	(void) ctx;
	(void) name;
	(void) value;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_eoh(SMFICTX *ctx)
{
	(void) ctx;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	(void) ctx;
	(void) chunk;
	(void) len;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_eom(SMFICTX *ctx)
{
	(void) ctx;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_abort(SMFICTX *ctx)
{
	(void) ctx;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_close(SMFICTX *ctx)
{
	(void) ctx;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_unknown(SMFICTX *ctx, const char *cmd)
{
	(void) ctx;
	(void) cmd;
	return SMFIS_CONTINUE;
}

static sfsistat
noop_data(SMFICTX *ctx)
{
	(void) ctx;
	return SMFIS_CONTINUE;
}

/*
 * SMFIS_ALL_OPTS makes libmilter accept every action the MTA offers and
 * request every protocol step for which a callback is registered (all of
 * them here), with replies, plus SKIP if offered.  So the MTA sends the
 * whole transaction and waits for a reply to every command: the worst
 * case for libmilter, and the same traffic gatehouse-load expects.
 * The out-parameters are ignored by libmilter in this case.
 */
static sfsistat
noop_negotiate(SMFICTX *ctx,
	       unsigned long f0, unsigned long f1,
	       unsigned long f2, unsigned long f3,
	       unsigned long *pf0, unsigned long *pf1,
	       unsigned long *pf2, unsigned long *pf3)
{
	(void) ctx;
	(void) f0;
	(void) f1;
	(void) f2;
	(void) f3;
	(void) pf0;
	(void) pf1;
	(void) pf2;
	(void) pf3;
	return SMFIS_ALL_OPTS;
}

static struct smfiDesc noop_desc = {
	"gatehouse-bench-noop",	/* filter name (used in libmilter's logs) */
	SMFI_VERSION,		/* compiled-against version; must not change */
	0,			/* no actions of our own; ALL_OPTS takes what is offered */
	noop_connect,
	noop_helo,
	noop_envfrom,
	noop_envrcpt,
	noop_header,
	noop_eoh,
	noop_body,
	noop_eom,
	noop_abort,
	noop_close,
	noop_unknown,
	noop_data,
	noop_negotiate,
};

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s unix:/path/to/socket\n", argv[0]);
		return 2;
	}

	/* smfi_setconn keeps the pointer; argv lives for the whole process. */
	if (smfi_setconn(argv[1]) == MI_FAILURE) {
		fprintf(stderr, "noop-milter: smfi_setconn(%s) failed\n", argv[1]);
		return 1;
	}

	/*
	 * libmilter's default listen(2) backlog is small; when the load
	 * generator opens many connections at once, a short queue would make
	 * connects fail or stall (a cost of the setup, not of the library).
	 * Must be set before smfi_opensocket, which calls listen.
	 */
	if (smfi_setbacklog(1024) == MI_FAILURE) {
		fprintf(stderr, "noop-milter: smfi_setbacklog failed\n");
		return 1;
	}

	if (smfi_register(noop_desc) == MI_FAILURE) {
		fprintf(stderr, "noop-milter: smfi_register failed\n");
		return 1;
	}

	/*
	 * Open the socket now rather than inside smfi_main, so a bad address
	 * is reported here with a clear exit status.  "true" removes a stale
	 * unix socket left by an earlier run that was killed.
	 */
	if (smfi_opensocket(true) == MI_FAILURE) {
		fprintf(stderr, "noop-milter: cannot open socket %s\n", argv[1]);
		return 1;
	}

	/* Runs until SIGTERM/SIGINT/SIGHUP; libmilter handles those itself. */
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
