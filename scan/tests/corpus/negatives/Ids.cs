namespace Billing;

public static class Ids
{
    public static readonly Guid TokenProviderId = new Guid("BE5E5303-7783-4CC2-A782-F0BCBA135A85");
    public static readonly Guid SecretStoreId = new Guid("71BEA5E0-DFF7-4574-AE43-76979E794EC8");
}
