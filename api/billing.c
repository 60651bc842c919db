/* Placeholder: filled in by the numbers issue. */
#include "api.h"

void billing_routes(void)
{
}
