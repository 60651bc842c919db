/* Placeholder: filled in by the numbers issue. */
#include "api.h"

void scenarios_routes(void)
{
}
