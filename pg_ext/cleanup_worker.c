/* placeholder: transaction age cleanup (issue 4) */
#include "postgres.h"
#include "duet_ext.h"

void
duet_cleanup_init(void)
{
}
