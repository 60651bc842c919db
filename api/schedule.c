/* Placeholder: filled in by the numbers issue. */
#include "api.h"

void schedule_routes(void)
{
}
