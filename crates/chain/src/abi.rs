//! The token interfaces paygate calls: ERC-20 and EIP-3009 as USDC (FiatTokenV2) implements them.

alloy::sol! {
    /// ERC-20 with EIP-3009 transfer authorizations (USDC, EURC, the project's TestUSDC).
    #[derive(Debug)]
    interface Eip3009Token {
        event Transfer(address indexed from, address indexed to, uint256 value);
        event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

        function name() external view returns (string);
        function version() external view returns (string);
        function decimals() external view returns (uint8);
        function balanceOf(address account) external view returns (uint256);
        function authorizationState(address authorizer, bytes32 nonce) external view returns (bool);
        function DOMAIN_SEPARATOR() external view returns (bytes32);
        function transfer(address to, uint256 value) external returns (bool);

        /// The `v, r, s` form every EIP-3009 token has (selector 0xe3ee160e).
        function transferWithAuthorization(
            address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
            uint8 v, bytes32 r, bytes32 s
        ) external;

        /// The `bytes signature` form of USDC v2.2, needed for smart-wallet (ERC-1271) signatures
        /// (selector 0xcf092995).
        function transferWithAuthorization(
            address from, address to, uint256 value, uint256 validAfter, uint256 validBefore, bytes32 nonce,
            bytes signature
        ) external;

        function mint(address to, uint256 amount) external;
    }
}
