/* Placeholder: filled in by the numbers issue. */
#include "api.h"

void holidays_routes(void)
{
}
