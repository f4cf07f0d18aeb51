/* placeholder: upsert and get_or_create (issue 5) */
#include "postgres.h"
#include "duet_ext.h"

void
duet_upsert_init(void)
{
}
