/** What a Portainer error may show: Portainer's own error fields, never an unexpected answer's body. */
import { describe, expect, it } from "vitest";
import { errorText, PortainerApiError } from "../../providers/portainer/client";

describe("Portainer error text", () => {
  it("keeps Portainer's message and details (pkg/libhttp/error)", () => {
    expect(errorText(JSON.stringify({ message: "API Key not found", details: "object not found inside the database" }))).toEqual({ message: "API Key not found", details: "object not found inside the database" });
  });

  it("never shows a JSON answer without an error message, such as a created key with an unexpected status", () => {
    const body = JSON.stringify({ rawAPIKey: "ptr_SECRETSECRETSECRET", apiKey: { id: 3 } });
    const { message, details } = errorText(body);
    const err = new PortainerApiError("POST", "/api/users/1/tokens", 200, message, details);
    expect(err.message).not.toContain("ptr_SECRET");
    expect(err.message).toBe(`Portainer POST /api/users/1/tokens: 200 (a JSON answer of ${body.length} bytes, not shown)`);
  });

  it("shows a short plain-text line (the mux's 404) and hides anything longer", () => {
    expect(errorText("404 page not found\n").message).toBe("404 page not found");
    expect(errorText(`line one\nX-API-Key: ptr_SECRET`).message).toBe("(an answer of 30 bytes, not shown)");
  });
});
