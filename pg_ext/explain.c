/* placeholder: query-plan helpers (issue 5) */
#include "postgres.h"
#include "duet_ext.h"
