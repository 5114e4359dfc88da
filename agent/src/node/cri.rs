//! The CRI calls the node side of the agent makes beyond those every part needs: the image
//! filesystem's usage and image removal, for image garbage collection.

use crate::cri::{FilesystemUsage, ImageFsInfoRequest, RemoveImageRequest};
use crate::runtime::{call, image_spec};
use crate::{Error, RuntimeClient};

impl RuntimeClient {
    /// The filesystems the runtime keeps images on, with the bytes its images use there.
    pub async fn image_fs_info(&self) -> Result<Vec<FilesystemUsage>, Error> {
        let mut client = self.images.clone();
        let reply = call(
            "ImageFsInfo",
            self.timeout,
            |r| client.image_fs_info(r),
            ImageFsInfoRequest {},
        )
        .await?;
        Ok(reply.image_filesystems)
    }

    /// Removes the image `image` names (an id, tag or digest). Removing one that is gone
    /// succeeds.
    pub async fn remove_image(&self, image: &str) -> Result<(), Error> {
        let mut client = self.images.clone();
        let request = RemoveImageRequest {
            image: Some(image_spec(image)),
        };
        call(
            "RemoveImage",
            self.timeout,
            |r| client.remove_image(r),
            request,
        )
        .await
        .map(drop)
    }
}
