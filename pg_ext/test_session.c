/* placeholder: force-rollback test sessions (issue 4) */
#include "postgres.h"
#include "duet_ext.h"

void
duet_test_session_init(void)
{
}

bool
duet_test_session_active(void)
{
	return false;
}
